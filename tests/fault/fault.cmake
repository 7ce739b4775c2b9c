# The fault injection build (-DOXS_FAULT_INJECTION=ON): tests/fault/test_fault fails the Nth
# allocation of the project's own code, for N = 1, 2, ... along each request path and the model
# load path, and checks that every run ends in a normal or an error response, with no crash
# and no leak.
#
# How allocations are counted: test_fault links with -Wl,--wrap=malloc and the same for calloc,
# realloc, strdup, strndup and free. The linker then sends every call to those functions from an
# object linked statically into test_fault (the library's objects, the HTTP frontend and the
# test itself) to __wrap_NAME in tests/fault/fault_alloc.c. Shared libraries (libuv, yajl,
# jansson, http-parser, zlib, ONNX Runtime, the C library) were linked on their own, so their
# internal allocations keep the real allocator and are neither counted nor failed. The JSON
# decoder gives yajl the request's arena as its allocator, and the arena is project code, so a
# new arena chunk that yajl needs is counted too.
#
# Only test_fault gets the wrap, so the rest of the build is the same as without this option.
# This file is included before the top-level targets exist, so it defers reading targets.cmake,
# which defines test_fault, until the end of the top-level CMakeLists.txt. CMake does not allow
# add_subdirectory in a deferred call, hence an include.
set(OXS_FAULT_TARGETS "${CMAKE_CURRENT_LIST_DIR}/targets.cmake")
cmake_language(DEFER DIRECTORY "${PROJECT_SOURCE_DIR}" CALL include "${OXS_FAULT_TARGETS}")
