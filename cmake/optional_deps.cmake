# Optional data-format dependencies of mercury::mercury (header-only INTERFACE target):
#   MERCURY_WITH_MATIO  SVHN .mat loader (mercury/data/svhn.hpp) via libmatio  -> MERCURY_HAVE_MATIO
#   MERCURY_WITH_STB    JPEG/PNG image folders (mercury/data/image_folder.hpp) via Debian's
#                       libstb (compiled stb_image)                          -> MERCURY_HAVE_STB
# Each option defaults to ON; a library that is not found turns its feature off with a warning
# (the loaders then throw "... was not compiled in"), so a minimal machine still builds.
# Libraries are linked by full path, so an exported mercury target needs no imported targets.
#
# Include it from the top-level CMakeLists.txt after `add_library(mercury INTERFACE)`:
#   include(cmake/optional_deps.cmake)
# It also works as -DCMAKE_PROJECT_INCLUDE=<this file> (runs right after project(), before the
# target exists): the wiring is then deferred to the end of the top-level directory.
include_guard(GLOBAL)

option(MERCURY_WITH_MATIO "SVHN .mat loader via libmatio (libmatio-dev)" ON)
option(MERCURY_WITH_STB "JPEG/PNG image-folder loader via stb_image (libstb-dev)" ON)

# Finds library `lib` (pkg-config module `pkg` first, then find_library) and the directory of
# `header` (also tried under the `suffix` sub-folder). Sets <prefix>_LIBS and <prefix>_INCLUDE in
# the caller; <prefix>_LIBS is empty when either is missing.
function(_mercury_find_optional prefix pkg lib header suffix)
  set(_libs "")
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(${prefix}_PC QUIET ${pkg})
    if(${prefix}_PC_FOUND)
      set(_libs ${${prefix}_PC_LINK_LIBRARIES})
    endif()
  endif()
  if(NOT _libs)
    find_library(${prefix}_LIBRARY ${lib})
    if(${prefix}_LIBRARY)
      set(_libs ${${prefix}_LIBRARY})
    endif()
  endif()
  find_path(${prefix}_INCLUDE_DIR ${header} HINTS ${${prefix}_PC_INCLUDE_DIRS}
            PATH_SUFFIXES ${suffix})
  if(NOT ${prefix}_INCLUDE_DIR)
    set(_libs "")
  endif()
  set(${prefix}_LIBS "${_libs}" PARENT_SCOPE)
  set(${prefix}_INCLUDE "${${prefix}_INCLUDE_DIR}" PARENT_SCOPE)
endfunction()

# Links the libraries, adds the include directory and defines `define` on mercury, or warns.
function(_mercury_use_optional prefix define what package)
  if(${prefix}_LIBS)
    target_link_libraries(mercury INTERFACE ${${prefix}_LIBS})
    target_include_directories(mercury SYSTEM INTERFACE ${${prefix}_INCLUDE})
    target_compile_definitions(mercury INTERFACE ${define}=1)
    message(STATUS "mercury: ${what} enabled (${${prefix}_LIBS})")
  else()
    message(WARNING "mercury: ${what} requested but not found (apt-get install ${package}); "
                    "the loader will throw 'not compiled in'")
  endif()
endfunction()

function(_mercury_wire_optional_deps)
  if(NOT TARGET mercury)
    message(FATAL_ERROR "optional_deps.cmake: target 'mercury' does not exist; include this "
                        "file after add_library(mercury INTERFACE)")
  endif()
  if(MERCURY_WITH_MATIO)
    _mercury_find_optional(MERCURY_MATIO matio matio matio.h "")
    _mercury_use_optional(MERCURY_MATIO MERCURY_HAVE_MATIO "SVHN .mat loading (libmatio)"
                          libmatio-dev)
  endif()
  if(MERCURY_WITH_STB)
    _mercury_find_optional(MERCURY_STB stb stb stb_image.h stb)
    _mercury_use_optional(MERCURY_STB MERCURY_HAVE_STB "JPEG/PNG image folders (stb_image)"
                          libstb-dev)
  endif()
endfunction()

if(TARGET mercury)
  _mercury_wire_optional_deps()
else()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _mercury_wire_optional_deps)
endif()
