# Shared by the cross toolchain files (toolchain-aarch64.cmake, toolchain-armv7.cmake): Debian's
# cross compiler for MERCURY_CROSS_TRIPLET, its sysroot plus / for Debian multiarch libraries
# (zlib1g-dev:<arch> and libssl-dev:<arch> install into /usr/lib/<triplet>), static executables
# run under MERCURY_CROSS_QEMU.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_C_COMPILER ${MERCURY_CROSS_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${MERCURY_CROSS_TRIPLET}-g++)
set(CMAKE_LIBRARY_ARCHITECTURE ${MERCURY_CROSS_TRIPLET})
set(CMAKE_FIND_ROOT_PATH /usr/${MERCURY_CROSS_TRIPLET} /)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# Header-only dependencies (Eigen, nlohmann/json, doctest, CLI11) come from the host's /usr.
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# Static executables: Debian 12's qemu-user (7.2) hangs in thread creation for dynamically
# linked aarch64 binaries on some hosts (seen here: even a bare std::thread never starts);
# statically linked ones run fine, and need no -L sysroot.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_CROSSCOMPILING_EMULATOR ${MERCURY_CROSS_QEMU})
# pkg-config must describe the target's libraries (FindOpenSSL asks it first), not the host's.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${MERCURY_CROSS_TRIPLET}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
