/*
 * Fuzzes model-name validation (oxs_model_name_check) and the routing that takes a model name
 * out of a request target: the path extraction, the route match and its percent-decoding.
 *
 * Input layout: byte 0 picks the method modulo 4 (GET, HEAD, POST or another), the rest is both
 * the model name given to oxs_model_name_check and the request target given to the router.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "http/routes.h"

#define MAX_NAME_BYTES 128

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

/* Checks what a name that passed validation must look like, so that it can name a folder. */
static void check_valid_name(const char *name, size_t len)
{
    bool ok = len >= 1 && len <= MAX_NAME_BYTES && name[0] != '.' &&
              memchr(name, '/', len) == NULL && memchr(name, '\0', len) == NULL;
    if (!ok) {
        fprintf(stderr, "fuzz: oxs_model_name_check accepted an invalid name of %zu bytes\n", len);
        abort();
    }
}

static void route(oxs__http_method_t method, const char *method_name, const char *target,
                  size_t len)
{
    const char *path;
    size_t path_len;
    if (!oxs__http_target_path(target, len, &path, &path_len))
        return;
    if (path < target || path_len > len || path + path_len > target + len) {
        fprintf(stderr, "fuzz: the path lies outside the request target\n");
        abort();
    }

    oxs_buf_t scratch;
    oxs_buf_init(&scratch, 0);
    oxs__http_route_t matched;
    const char *allow = NULL;
    char error[1024] = "";
    int status = oxs__http_route_match(method, method_name, path, path_len, &scratch, &matched,
                                       &allow, error, sizeof(error));
    if (status != 0 && error[0] == '\0') {
        fprintf(stderr, "fuzz: route match returned %d with no message\n", status);
        abort();
    }
    if (status == 405 && allow == NULL) {
        fprintf(stderr, "fuzz: 405 without an Allow header value\n");
        abort();
    }
    if (status == 0 && matched.model != NULL) {
        /* A NUL byte, encoded or not, must be rejected, so the decoded name is one C string. */
        if (strlen(matched.model) != scratch.len) {
            fprintf(stderr, "fuzz: the decoded model name contains a NUL byte\n");
            abort();
        }
        char name_error[1024];
        if (oxs_model_name_check(matched.model, scratch.len, name_error, sizeof(name_error)) ==
            OXS_OK)
            check_valid_name(matched.model, scratch.len);
    }
    oxs_buf_free(&scratch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const oxs__http_method_t methods[] = {OXS__HTTP_GET, OXS__HTTP_HEAD, OXS__HTTP_POST,
                                                 OXS__HTTP_OTHER};
    static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT"};
    if (size < 1)
        return 0;
    size_t method = data[0] % 4;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    char error[1024] = "";
    oxs_status_t status = oxs_model_name_check(text, len, error, sizeof(error));
    if (status == OXS_OK)
        check_valid_name(text, len);
    else if (error[0] == '\0') {
        fprintf(stderr, "fuzz: oxs_model_name_check failed with no message\n");
        abort();
    }

    route(methods[method], method_names[method], text, len);
    return 0;
}
