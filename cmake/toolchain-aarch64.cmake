# Cross-compile for 64-bit ARM with Debian's g++-aarch64-linux-gnu; tests run under qemu-aarch64.
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(MERCURY_CROSS_TRIPLET aarch64-linux-gnu)
set(MERCURY_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/debian-cross.cmake)
