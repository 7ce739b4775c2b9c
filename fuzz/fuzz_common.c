#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef OXS_FUZZ_DATA
#error "OXS_FUZZ_DATA must name the folder of generated test models"
#endif

oxs_server_t *fuzz_server_create(const char *const *models, size_t count)
{
    const char *data = getenv("ONNXSERVE_TEST_DATA");
    if (data == NULL || data[0] == '\0')
        data = OXS_FUZZ_DATA;

    oxs_options_t options;
    oxs_options_init(&options);
    options.workers = 1;
    options.queue_size = 8;

    oxs_server_t *server = NULL;
    char error[1024];
    if (oxs_server_create(&options, &server, error, sizeof(error)) != OXS_OK) {
        fprintf(stderr, "fuzz: creating the server failed: %s\n", error);
        exit(1);
    }
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.onnx", data, models[i]);
        if (oxs_server_load_model(server, models[i], 1, path, error, sizeof(error)) != OXS_OK) {
            fprintf(stderr,
                    "fuzz: loading %s failed: %s\n"
                    "Set ONNXSERVE_TEST_DATA to a folder written by tests/tools/make_models.py.\n",
                    path, error);
            exit(1);
        }
    }
    return server;
}

oxs_model_t *fuzz_model(oxs_server_t *server, const char *name)
{
    oxs_model_t *model = NULL;
    if (oxs_server_get_model(server, name, 1, &model) != OXS_OK) {
        fprintf(stderr, "fuzz: model %s is not loaded\n", name);
        exit(1);
    }
    return model;
}
