/*
 * Fuzzes the raw body decoder of the binary tensor extension (oxs_raw_decode_infer): with
 * Inference-Header-Content-Length 0 the whole body is the data of the model's only input.
 *
 * Input layout: byte 0 picks the model modulo 4: scale ([-1,4] FP32, batch size from the body
 * length), strings ([-1] BYTES, length-prefixed elements), matrix ([-1,-1] FP32, which the raw
 * form cannot describe) or scalar (rank 0 FP32). The rest is the body.
 */
#include <stdio.h>
#include <stdlib.h>

#include "codec/raw.h"
#include "fuzz_common.h"

static const char *const model_names[] = {"scale", "strings", "matrix", "scalar"};
#define MODEL_COUNT (sizeof(model_names) / sizeof(model_names[0]))

static oxs_server_t *server;
static oxs_model_t *models[MODEL_COUNT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    server = fuzz_server_create(model_names, MODEL_COUNT);
    for (size_t i = 0; i < MODEL_COUNT; i++)
        models[i] = fuzz_model(server, model_names[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    oxs_model_t *model = models[data[0] % MODEL_COUNT];

    oxs_request_t *request = NULL;
    if (oxs_request_create(server, model, &request) != OXS_OK)
        abort();

    char error[1024] = "";
    oxs_status_t status =
        oxs_raw_decode_infer(request, (const char *)data + 1, size - 1, error, sizeof(error));
    if (status != OXS_OK && error[0] == '\0') {
        fprintf(stderr, "fuzz: decoding failed with %s and no message\n", oxs_status_name(status));
        abort();
    }
    oxs_request_destroy(request);
    return 0;
}
