/*
 * Exit for unit tests that run ONNX Runtime. ONNX Runtime 1.29 leaves a thread running after its
 * environment is released, and that thread can read static data that exit handlers free.
 * AddressSanitizer reported it as a use after free inside libonnxruntime in about one run in
 * six of test_core under parallel load. The tests free everything they own before main
 * returns, so they end with _exit, after the leak check that exit would have run.
 */
#ifndef OXS_TESTS_EXIT_NOW_H
#define OXS_TESTS_EXIT_NOW_H

#include <stdio.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define OXS_TEST_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OXS_TEST_LEAK_CHECK 1
#endif
#endif
#ifdef OXS_TEST_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

static inline _Noreturn void oxs_test_exit(int status)
{
    fflush(NULL);
#ifdef OXS_TEST_LEAK_CHECK
    __lsan_do_leak_check();
#endif
    _exit(status);
}

#endif /* OXS_TESTS_EXIT_NOW_H */
