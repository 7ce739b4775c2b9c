/*
 * Fuzzes the JSON tensor decoders (oxs_json_decode_infer and oxs_json_decode_predict) against
 * the requests of the generated test models. Decoded requests are destroyed without running.
 *
 * Input layout: two bytes of settings, then the request body.
 *   byte 0, bits 0-2  the model: identity (13 inputs, one per datatype), scale ([-1,4] FP32),
 *                     strings ([-1] BYTES), matrix ([-1,-1] FP32) or scalar (rank 0), modulo 5
 *   byte 0, bit 3     decode as a /predict body instead of an infer body
 *   byte 1            how many bytes at the end of the body are binary tensor data after the
 *                     JSON (the Inference-Header-Content-Length split); ignored for /predict
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/json.h"
#include "fuzz_common.h"

static const char *const model_names[] = {"identity", "scale", "strings", "matrix", "scalar"};
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
    if (size < 2)
        return 0;
    oxs_model_t *model = models[(data[0] & 0x07) % MODEL_COUNT];
    bool predict = (data[0] & 0x08) != 0;
    size_t binary_len = data[1];
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    if (binary_len > len)
        binary_len = len;

    oxs_request_t *request = NULL;
    if (oxs_request_create(server, model, &request) != OXS_OK)
        abort();

    char error[1024] = "";
    oxs_status_t status;
    oxs_json_reply_t *reply = NULL;
    if (predict)
        status = oxs_json_decode_predict(request, body, len, error, sizeof(error));
    else
        status = oxs_json_decode_infer(request, body, len, len - binary_len, &reply, error,
                                       sizeof(error));

    if (status != OXS_OK && error[0] == '\0') {
        fprintf(stderr, "fuzz: decoding failed with %s and no message\n", oxs_status_name(status));
        abort();
    }
    if (status == OXS_OK && !predict && reply == NULL) {
        fprintf(stderr, "fuzz: an infer body decoded without a reply plan\n");
        abort();
    }
    oxs_request_destroy(request);
    return 0;
}
