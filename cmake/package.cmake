# SPDX-License-Identifier: MIT
#
# The Debian package: `cpack -G DEB` in a build directory makes pyscope_VERSION_amd64.deb with
# /usr/bin/pyscope and the README. From the static build (scripts/build-static; what
# tests/integration/test_package.py checks) it depends on nothing and runs on any x86-64 Linux,
# a fresh Debian 12 included; from a dynamic build its Depends are computed by dpkg-shlibdeps
# (libelf1, libjansson4, libunwind8, libcapstone4, ...).

install(TARGETS pyscope RUNTIME DESTINATION bin)
install(FILES ${CMAKE_SOURCE_DIR}/README.md DESTINATION share/doc/pyscope)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pyscope)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
list(GET PYSCOPE_SUPPORTED_VERSIONS 0 PYSCOPE_OLDEST_VERSION)
list(GET PYSCOPE_SUPPORTED_VERSIONS -1 PYSCOPE_NEWEST_VERSION)
string(CONCAT CPACK_PACKAGE_DESCRIPTION_SUMMARY
       "see what a running CPython ${PYSCOPE_OLDEST_VERSION}-${PYSCOPE_NEWEST_VERSION} process is "
       "doing, from the outside")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
       "pyscope reads a live Python process's memory (process_vm_readv): every thread's "
       "stack, the GIL holder, exceptions as they are raised, growing containers, a live "
       "terminal view and profiles. Nothing is injected into the target.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "pyscope maintainers <pyscope@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION devel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
if(PYSCOPE_STATIC)
    # Only the pyscope target is built statically: packaging must not build `all` (unit tests
    # and benchmarks link the static archives without -static).
    set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)
else()
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
endif()
include(CPack)
