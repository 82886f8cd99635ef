# Cross-compile for 32-bit ARM (ARMv7-A, hard float) with Debian's g++-arm-linux-gnueabihf; tests
# run under qemu-arm. The program is built for Debian armhf's baseline (ARMv7-A, VFPv3-D16, no
# NEON), so it runs on every armhf board; kernels/src/neon.cpp alone is compiled with
# -mfpu=neon-vfpv4 and used only when the CPU reports NEON and VFPv4 (HWCAP, kernels/src/table.cpp).
set(CMAKE_SYSTEM_PROCESSOR armv7)
set(MERCURY_CROSS_TRIPLET arm-linux-gnueabihf)
set(MERCURY_CROSS_QEMU qemu-arm)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
# _FILE_OFFSET_BITS=64: files over 2 GiB. -Wno-psabi: GCC's notes that passing some types changed
# ABI in GCC 7.1 (everything here is built by one compiler).
set(_armv7_flags "-march=armv7-a -mfpu=vfpv3-d16 -mfloat-abi=hard -D_FILE_OFFSET_BITS=64")
set(CMAKE_C_FLAGS_INIT "${_armv7_flags}")
set(CMAKE_CXX_FLAGS_INIT "${_armv7_flags} -Wno-psabi")
