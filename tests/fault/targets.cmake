# The fault injection test, read by fault.cmake at the end of the top-level CMakeLists.txt when
# OXS_FAULT_INJECTION is on. See fault.cmake for how the wrapped allocator counts only the
# project's own allocations.
find_library(CMOCKA_LIBRARY cmocka REQUIRED)
find_path(CMOCKA_INCLUDE_DIR cmocka.h REQUIRED)

add_executable(test_fault ${CMAKE_CURRENT_LIST_DIR}/test_fault.c
                          ${CMAKE_CURRENT_LIST_DIR}/fault_alloc.c)
target_include_directories(test_fault PRIVATE ${CMOCKA_INCLUDE_DIR} ${PROJECT_SOURCE_DIR}/src
                           ${PROJECT_SOURCE_DIR}/tests/unit)
target_link_libraries(test_fault PRIVATE oxs_frontend ${CMOCKA_LIBRARY})
target_link_options(test_fault PRIVATE
                    "LINKER:--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup"
                    "LINKER:--wrap=strndup,--wrap=free")
# Exports the test's functions, so that stacks printed without a sanitizer name them.
set_target_properties(test_fault PROPERTIES ENABLE_EXPORTS ON)

# The unit tests' environment (tests/CMakeLists.txt), whose variables this file cannot read.
# allow_user_segv_handler=0 keeps AddressSanitizer's handler in place of cmocka's, so that a crash
# prints its stack and the request kind and N that caused it.
set(OXS_FAULT_TEST_ENV
    "ONNXSERVE_TEST_DATA=${PROJECT_BINARY_DIR}/tests/data"
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:allow_user_segv_handler=0"
    "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/sanitizer/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
add_test(NAME fault.test_fault COMMAND test_fault)
set_tests_properties(fault.test_fault PROPERTIES ENVIRONMENT "${OXS_FAULT_TEST_ENV}"
                     FIXTURES_REQUIRED test_models TIMEOUT 1200)
