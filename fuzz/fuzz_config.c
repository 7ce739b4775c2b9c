/*
 * Fuzzes config.json parsing (oxs__config_parse) from text, over the defaults of a server
 * without models. The whole input is the file's text, with no terminating NUL.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"
#include "fuzz_common.h"

static oxs_server_t *server;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    server = fuzz_server_create(NULL, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    oxs__config_t config;
    char error[1024] = "";

    oxs_status_t status = oxs__config_parse(server, (const char *)data, size, "config.json",
                                            &config, error, sizeof(error));
    if (status != OXS_OK) {
        if (error[0] == '\0') {
            fprintf(stderr, "fuzz: parsing failed with %s and no message\n",
                    oxs_status_name(status));
            abort();
        }
        return 0;
    }
    oxs__config_free(server, &config);
    return 0;
}
