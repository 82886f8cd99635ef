# cmake --install <build> [--prefix P] lays out:
#   P/include/mercury/{mercury,kernels,net,models}/...   the headers, repo layout kept, so
#                                                        -IP/include/mercury works like -I<repo>
#   P/lib/libmercury_kernels.a                           the compiled kernels (run-time dispatch)
#   P/lib/cmake/mercury/                                 find_package(mercury CONFIG) ->
#                                                        mercury::mercury, mercury::net,
#                                                        mercury::kernels
#   P/lib/pkgconfig/mercury.pc                           pkg-config --cflags --libs mercury
#   P/bin/mercury                                        the CLI (when built)
# Both package files are relocatable: they find the prefix from their own location.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(MERCURY_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/mercury)

install(DIRECTORY mercury models net DESTINATION include/mercury
        FILES_MATCHING PATTERN "*.hpp")
install(DIRECTORY kernels/ DESTINATION include/mercury/kernels
        FILES_MATCHING PATTERN "*.hpp" PATTERN "src" EXCLUDE)

install(TARGETS mercury mercury_net mercury_kernels EXPORT mercuryTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT mercuryTargets NAMESPACE mercury:: DESTINATION ${MERCURY_INSTALL_CMAKEDIR})
if(TARGET mercury_cli)
  install(TARGETS mercury_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

configure_package_config_file(cmake/mercuryConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/mercuryConfig.cmake INSTALL_DESTINATION ${MERCURY_INSTALL_CMAKEDIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/mercuryConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mercuryConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/mercuryConfigVersion.cmake
        DESTINATION ${MERCURY_INSTALL_CMAKEDIR})

# pkg-config: one module for the whole library (headers + compiled kernels + net), with the
# same definitions and optional libraries the CMake targets carry.
set(_pc_requires "eigen3 nlohmann_json libcrypto")
set(_pc_cflags "-DMERCURY_KERNELS_COMPILED -DASIO_STANDALONE -DASIO_NO_DEPRECATED")
set(_pc_libs "")
get_target_property(_defs mercury INTERFACE_COMPILE_DEFINITIONS)
foreach(d IN LISTS _defs)
  if(d)
    string(APPEND _pc_cflags " -D${d}")
  endif()
endforeach()
get_target_property(_sys_incs mercury INTERFACE_SYSTEM_INCLUDE_DIRECTORIES)
foreach(i IN LISTS _sys_incs)
  if(i AND NOT i STREQUAL "/usr/include")  # the compiler's own default
    string(APPEND _pc_cflags " -I${i}")
  endif()
endforeach()
get_target_property(_links mercury INTERFACE_LINK_LIBRARIES)
foreach(l IN LISTS _links)
  if(l STREQUAL "ZLIB::ZLIB")
    string(APPEND _pc_requires " zlib")
  elseif(IS_ABSOLUTE "${l}")  # the optional data-format libraries (cmake/optional_deps.cmake)
    string(APPEND _pc_libs " ${l}")
  endif()
endforeach()
if(MERCURY_WITH_OPENBLAS)
  foreach(l IN LISTS OpenBLAS_LIBRARIES)
    string(APPEND _pc_libs " ${l}")
  endforeach()
endif()
file(RELATIVE_PATH _pc_to_prefix "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" _pc_to_prefix "${_pc_to_prefix}")
configure_file(cmake/mercury.pc.in ${CMAKE_CURRENT_BINARY_DIR}/mercury.pc @ONLY)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/mercury.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
