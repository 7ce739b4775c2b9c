/*
 * Shared set-up for the libFuzzer drivers: the entry points libFuzzer calls, and a server with
 * the generated test models loaded once per process.
 */
#ifndef OXS_FUZZ_COMMON_H
#define OXS_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "onnxserve.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Creates a server with one worker per model and loads each named model (version 1) from
 * $ONNXSERVE_TEST_DATA/NAME.onnx, or from the folder the build generated when that variable is
 * unset. Exits the process with a message on failure, since no input can run without it. */
oxs_server_t *fuzz_server_create(const char *const *models, size_t count);

/* Returns a reference to a model that fuzz_server_create loaded, which the driver keeps for the
 * life of the process. */
oxs_model_t *fuzz_model(oxs_server_t *server, const char *name);

#endif /* OXS_FUZZ_COMMON_H */
