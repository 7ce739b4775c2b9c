/*
 * Model registry: every model registered with the server, in name order, with its state. Loading builds
 * the ONNX Runtime session outside the registry lock, so requests for other models go on.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/internal.h"

struct oxs__registry {
    oxs_server_t *server;
    pthread_mutex_t lock;
    oxs_model_t **models; /* sorted by name, then version */
    size_t count;
    size_t capacity;
};

oxs__registry_t *oxs__registry_create(oxs_server_t *server)
{
    oxs__registry_t *registry = oxs__calloc(&server->allocator, 1, sizeof(*registry));
    if (registry == NULL)
        return NULL;
    registry->server = server;
    pthread_mutex_init(&registry->lock, NULL);
    return registry;
}

void oxs__registry_stop(oxs__registry_t *registry)
{
    pthread_mutex_lock(&registry->lock);
    size_t count = registry->count;
    oxs_model_t **models = registry->models;
    pthread_mutex_unlock(&registry->lock);
    /* Called once no request can be submitted, after loading has finished. */
    for (size_t i = 0; i < count; i++)
        oxs__scheduler_stop(models[i]);
}

void oxs__registry_destroy(oxs__registry_t *registry)
{
    if (registry == NULL)
        return;
    for (size_t i = 0; i < registry->count; i++)
        oxs_model_release(registry->models[i]);
    oxs__free(&registry->server->allocator, registry->models);
    pthread_mutex_destroy(&registry->lock);
    oxs__free(&registry->server->allocator, registry);
}

static int compare_models(const oxs_model_t *a, const char *name, int64_t version)
{
    int order = strcmp(a->name, name);
    if (order != 0)
        return order;
    return (a->version > version) - (a->version < version);
}

/* Inserts model (taking the caller's reference) in order; fails on a duplicate. */
static oxs_status_t registry_insert(oxs__registry_t *registry, oxs_model_t *model, char *error,
                                   size_t error_size)
{
    oxs_status_t result = OXS_OK;
    pthread_mutex_lock(&registry->lock);

    size_t at = 0;
    while (at < registry->count && compare_models(registry->models[at], model->name,
                                                  model->version) < 0)
        at++;
    if (at < registry->count && compare_models(registry->models[at], model->name,
                                               model->version) == 0) {
        result = oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                           "model \"%s\" version %lld is already loaded", model->name,
                           (long long)model->version);
        goto done;
    }
    if (registry->count == registry->capacity) {
        size_t capacity = registry->capacity ? registry->capacity * 2 : 8;
        oxs_model_t **models = oxs__calloc(&registry->server->allocator, capacity,
                                           sizeof(*models));
        if (models == NULL) {
            result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
            goto done;
        }
        if (registry->count > 0)
            memcpy(models, registry->models, registry->count * sizeof(*models));
        oxs__free(&registry->server->allocator, registry->models);
        registry->models = models;
        registry->capacity = capacity;
    }
    memmove(&registry->models[at + 1], &registry->models[at],
            (registry->count - at) * sizeof(*registry->models));
    registry->models[at] = model;
    registry->count++;

done:
    pthread_mutex_unlock(&registry->lock);
    return result;
}

/* A model name becomes a URL path segment and a log field: keep it to a safe alphabet. */
static bool valid_model_name(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 128 || name[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}

/* Writes ios as "name:DATATYPE[dims] ..." into text, cut at size. */
static void format_ios(char *text, size_t size, const oxs__io_t *ios, size_t count)
{
    size_t used = 0;
    text[0] = '\0';
    for (size_t i = 0; i < count && used < size; i++) {
        const oxs_tensor_info_t *info = &ios[i].info;
        int n = snprintf(text + used, size - used, "%s%s:%s[", i ? " " : "", info->name,
                         oxs_datatype_name(info->datatype));
        used += n > 0 ? (size_t)n : 0;
        for (int d = 0; d <= info->rank && used < size; d++) {
            if (d == info->rank)
                n = snprintf(text + used, size - used, "]");
            else
                n = snprintf(text + used, size - used, "%s%lld", d ? "," : "",
                             (long long)info->dims[d]);
            used += n > 0 ? (size_t)n : 0;
        }
    }
}

static void log_load(const oxs_model_t *model, const char *path)
{
    char inputs[1024], outputs[1024];
    format_ios(inputs, sizeof(inputs), model->inputs, model->input_count);
    format_ios(outputs, sizeof(outputs), model->outputs, model->output_count);
    oxs_log_field_t fields[] = {
        {.key = "version", .num = model->version},
        {.key = "path", .str = path},
        {.key = "load_us", .num = model->load_us},
        {.key = "inputs", .str = inputs},
        {.key = "outputs", .str = outputs},
        {.key = "opset", .num = model->metadata.opset},
    };
    oxs__log(model->server, OXS_LOG_INFO, model->name, "model loaded", fields,
             sizeof(fields) / sizeof(fields[0]));
}

/* Creates a registered model in state LOADING (or UNAVAILABLE with reason, when path is NULL)
 * and returns it with one extra reference for the caller. */
static oxs_status_t model_register(oxs_server_t *server, const char *name, int64_t version,
                                   oxs_model_t **out, char *error, size_t error_size)
{
    oxs_model_t *model = oxs__calloc(&server->allocator, 1, sizeof(*model));
    if (model == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    atomic_init(&model->refs, 2); /* the registry's and the caller's */
    atomic_init(&model->state, OXS_MODEL_LOADING);
    atomic_init(&model->described, false);
    model->server = server;
    model->version = version;
    model->metadata.opset = -1;
    model->metadata.producer_name = model->metadata.graph_name = "";
    model->metadata.domain = model->metadata.description = "";
    model->name = oxs__strdup(&server->allocator, name);
    if (model->name == NULL) {
        oxs__free(&server->allocator, model);
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    }
    oxs_status_t result = registry_insert(server->registry, model, error, error_size);
    if (result != OXS_OK) {
        oxs__free(&server->allocator, model->name);
        oxs__free(&server->allocator, model);
        return result;
    }
    *out = model;
    return OXS_OK;
}

static void mark_unavailable(oxs_model_t *model, const char *reason, const char *path)
{
    snprintf(model->reason, sizeof(model->reason), "%s", reason);
    if (path != NULL)
        oxs__redact_text(model->reason, path);
    oxs__redact_paths(model->reason);
    atomic_store(&model->state, OXS_MODEL_UNAVAILABLE);
    oxs_log_field_t fields[] = {
        {.key = "version", .num = model->version},
        {.key = "path", .str = path ? path : ""},
        {.key = "error", .str = model->reason},
    };
    oxs__log(model->server, OXS_LOG_ERROR, model->name, "model failed to load", fields,
             sizeof(fields) / sizeof(fields[0]));
}

oxs_status_t oxs_server_load_model(oxs_server_t *server, const char *name, int64_t version,
                                   const char *path, char *error, size_t error_size)
{
    return oxs_server_load_model_config(server, name, version, path, NULL, error, error_size);
}

typedef struct warmup_wait {
    pthread_mutex_t lock;
    pthread_cond_t done;
    oxs_response_t *response;
} warmup_wait_t;

static void warmup_complete(void *user, oxs_response_t *response)
{
    warmup_wait_t *wait = user;
    pthread_mutex_lock(&wait->lock);
    wait->response = response;
    pthread_cond_signal(&wait->done);
    pthread_mutex_unlock(&wait->lock);
}

/* Fills every input with generated data: dynamic dims are 1, numbers are small pseudo-random
 * values (zero or one for BOOL) and BYTES elements are 4 letters. */
static oxs_status_t fill_random_inputs(oxs_request_t *request, char *error, size_t error_size)
{
    const oxs_model_t *model = request->model;
    uint32_t state = 12345;
    for (size_t i = 0; i < model->input_count; i++) {
        const oxs__io_t *io = &model->inputs[i];
        int64_t shape[OXS_MAX_DIMS];
        size_t count = 1;
        int rank = io->info.rank < 0 ? 1 : io->info.rank;
        for (int d = 0; d < rank; d++) {
            shape[d] = io->info.rank < 0 || io->dims[d] < 0 ? 1 : io->dims[d];
            count *= (size_t)shape[d];
        }
        void *data = NULL;
        size_t bytes = 0;
        oxs_status_t status;
        if (io->info.datatype == OXS_DT_BYTES) {
            bytes = count * 8;
            status = oxs_request_add_bytes_input(request, io->info.name, strlen(io->info.name),
                                                 shape, rank, bytes, &data, error, error_size);
            if (status != OXS_OK)
                return status;
            for (size_t e = 0; e < count; e++)
                memcpy((char *)data + e * 8, "\x04\0\0\0warm", 8);
            continue;
        }
        status = oxs_request_add_input(request, io->info.name, strlen(io->info.name),
                                       io->info.datatype, shape, rank, &data, &bytes, error,
                                       error_size);
        if (status != OXS_OK)
            return status;
        unsigned char *out = data;
        for (size_t b = 0; b < bytes; b++) {
            state = state * 1103515245u + 12345u;
            out[b] = io->info.datatype == OXS_DT_BOOL ? (unsigned char)((state >> 16) & 1)
                                                      : (unsigned char)((state >> 16) & 0x3F);
        }
        if (io->info.datatype == OXS_DT_FP32 || io->info.datatype == OXS_DT_FP64 ||
            io->info.datatype == OXS_DT_FP16 || io->info.datatype == OXS_DT_BF16)
            memset(data, 0, bytes); /* zeros: random bits could be NaN */
    }
    return OXS_OK;
}

/* Runs the configuration's warmup requests one at a time before the model is READY. */
static oxs_status_t run_warmup(oxs_model_t *model, char *error, size_t error_size)
{
    const oxs_model_config_t *config = &model->config.config;
    oxs_server_t *server = model->server;
    size_t runs = config->warmup_random ? 1 : config->warmup_count;
    if (runs > 0 && !config->warmup_random && server->options.warmup_decode == NULL)
        return oxs__fail(OXS_ERR_UNSUPPORTED, error, error_size,
                         "%s: warmup: request bodies need a decoder, which this program did not "
                         "set; use \"random\"",
                         model->config.file);

    for (size_t i = 0; i < runs; i++) {
        char message[400] = "";
        oxs_request_t *request = NULL;
        oxs_status_t status = oxs__request_create(server, model, &request);
        /* Warmup must run: the model's default_timeout_us is for clients. */
        if (status == OXS_OK)
            status = oxs_request_set_timeout_us(request, OXS_MAX_TIMEOUT_US, message,
                                                sizeof(message));
        if (status == OXS_OK) {
            if (config->warmup_random)
                status = fill_random_inputs(request, message, sizeof(message));
            else
                status = server->options.warmup_decode(server->options.warmup_user, request,
                                                       config->warmup_bodies[i],
                                                       strlen(config->warmup_bodies[i]), message,
                                                       sizeof(message));
        }
        warmup_wait_t wait = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL};
        if (status == OXS_OK)
            status = oxs_request_submit(request, warmup_complete, &wait, message,
                                        sizeof(message));
        if (status == OXS_OK) {
            pthread_mutex_lock(&wait.lock);
            while (wait.response == NULL)
                pthread_cond_wait(&wait.done, &wait.lock);
            pthread_mutex_unlock(&wait.lock);
            status = oxs_response_status(wait.response);
            snprintf(message, sizeof(message), "%s", oxs_response_error(wait.response));
            oxs_response_destroy(wait.response);
        } else {
            oxs_request_destroy(request);
        }
        if (status != OXS_OK) {
            if (config->warmup_random)
                return oxs__fail(status, error, error_size, "%s: warmup \"random\": %s",
                                 model->config.file, message);
            return oxs__fail(status, error, error_size, "%s: warmup[%zu]: %s",
                             model->config.file, i, message);
        }
    }
    if (runs > 0) {
        oxs_log_field_t fields[] = {{.key = "requests", .num = (int64_t)runs},
                                    {.key = "random", .num = config->warmup_random}};
        oxs__log(server, OXS_LOG_INFO, model->name, "model warmed up", fields, 2);
    }
    return OXS_OK;
}

/* Reads the configuration (or takes the defaults), loads the session and completes the
 * configuration from the model. */
static oxs_status_t load_configured(oxs_model_t *model, const char *path,
                                    const char *config_path, char *message, size_t size)
{
    oxs_status_t result = OXS_OK;
    if (config_path != NULL) {
        const char *file = strrchr(config_path, '/');
        result = oxs__config_read(model->server, config_path, file != NULL ? file + 1 : config_path,
                                  &model->config, message, size);
    }
    else
        oxs__config_defaults(model->server, &model->config.config);
    if (config_path == NULL)
        snprintf(model->config.file, sizeof(model->config.file), "config.json");
    if (result == OXS_OK)
        result = oxs__session_load(model, path, message, size);
    /* Warmup decodes requests through the public accessors while the model is LOADING. */
    if (result == OXS_OK)
        atomic_store(&model->described, true);
    if (result == OXS_OK)
        result = oxs__config_complete(model, &model->config, message, size);
    if (result == OXS_OK)
        result = oxs__scheduler_start(model, message, size);
    if (result == OXS_OK)
        result = run_warmup(model, message, size);
    return result;
}

oxs_status_t oxs_server_load_model_config(oxs_server_t *server, const char *name,
                                          int64_t version, const char *path,
                                          const char *config_path, char *error,
                                          size_t error_size)
{
    char message[512];
    oxs_model_t *model = NULL;

    if (server == NULL || name == NULL || path == NULL)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "server, name and path are required");
    if (!valid_model_name(name))
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "invalid model name \"%.128s\": expected 1 to 128 letters, digits, '_', "
                         "'-' or '.', not starting with '.'",
                         name);
    if (version <= 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "model \"%s\": invalid version %lld, expected a positive integer", name,
                         (long long)version);

    oxs_status_t result = model_register(server, name, version, &model, error, error_size);
    if (result != OXS_OK)
        return result;

    int64_t started = oxs__now_us();
    result = load_configured(model, path, config_path, message, sizeof(message));
    model->load_us = oxs__now_us() - started;
    if (result != OXS_OK) {
        oxs__scheduler_stop(model);
        /* Once described, a reader may hold pointers into the model's inputs: they stay until
         * the model is freed. */
        if (!atomic_load(&model->described))
            oxs__session_unload(model);
        oxs__config_free(server, &model->config);
        mark_unavailable(model, message, path);
        oxs__fail(result, error, error_size, "%s", model->reason);
    } else {
        atomic_store(&model->state, OXS_MODEL_READY);
        log_load(model, path);
    }
    oxs_model_release(model);
    return result;
}

/* Returns the highest positive integer subfolder of model_dir that contains model.onnx, or 0. */
static int64_t highest_version(const char *model_dir)
{
    DIR *dir = opendir(model_dir);
    if (dir == NULL)
        return 0;
    int64_t best = 0;
    struct dirent *entry;
    char path[4096];
    while ((entry = readdir(dir)) != NULL) {
        char *end = NULL;
        errno = 0;
        long long version = strtoll(entry->d_name, &end, 10);
        if (errno != 0 || end == entry->d_name || *end != '\0' || version <= 0 ||
            entry->d_name[0] == '+' || entry->d_name[0] == '0')
            continue;
        int n = snprintf(path, sizeof(path), "%s/%s/model.onnx", model_dir, entry->d_name);
        struct stat info;
        if (n > 0 && (size_t)n < sizeof(path) && stat(path, &info) == 0 && S_ISREG(info.st_mode) &&
            version > best)
            best = version;
    }
    closedir(dir);
    return best;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

oxs_status_t oxs_server_load_repository(oxs_server_t *server, const char *path, char *error,
                                        size_t error_size)
{
    oxs_status_t result = OXS_OK;
    char **names = NULL;
    size_t count = 0, capacity = 0;
    struct dirent *entry;
    char model_dir[4096], model_path[4200];

    DIR *dir = opendir(path);
    if (dir == NULL)
        return oxs__fail(OXS_ERR_NOT_FOUND, error, error_size,
                         "model repository \"%s\" cannot be read: %s", path, strerror(errno));

    while ((entry = readdir(dir)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        int n = snprintf(model_dir, sizeof(model_dir), "%s/%s", path, entry->d_name);
        struct stat info;
        if (n < 0 || (size_t)n >= sizeof(model_dir) || stat(model_dir, &info) != 0 ||
            !S_ISDIR(info.st_mode))
            continue;
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            char **grown = oxs__calloc(&server->allocator, capacity, sizeof(*grown));
            if (grown == NULL) {
                result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
                goto cleanup;
            }
            if (count > 0)
                memcpy(grown, names, count * sizeof(*names));
            oxs__free(&server->allocator, names);
            names = grown;
        }
        names[count] = oxs__strdup(&server->allocator, entry->d_name);
        if (names[count] == NULL) {
            result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
            goto cleanup;
        }
        count++;
    }
    if (count > 1)
        qsort(names, count, sizeof(*names), compare_names);

    for (size_t i = 0; i < count; i++) {
        char message[512];
        snprintf(model_dir, sizeof(model_dir), "%s/%s", path, names[i]);
        int64_t version = highest_version(model_dir);
        if (version == 0) {
            /* Registered anyway, so /healthz and metadata show why it is not served. */
            oxs_model_t *model = NULL;
            if (valid_model_name(names[i]) &&
                model_register(server, names[i], 0, &model, message, sizeof(message)) == OXS_OK) {
                mark_unavailable(model,
                                 "no version folder (a positive integer) with a model.onnx file",
                                 model_dir);
                oxs_model_release(model);
            }
            continue;
        }
        snprintf(model_path, sizeof(model_path), "%s/%lld/model.onnx", model_dir,
                 (long long)version);
        char config_path[4200];
        snprintf(config_path, sizeof(config_path), "%s/config.json", model_dir);
        struct stat config_info;
        bool has_config = stat(config_path, &config_info) == 0;
        /* A failure is recorded in the model's state and logged; the others still load. */
        oxs_server_load_model_config(server, names[i], version, model_path,
                                     has_config ? config_path : NULL, message, sizeof(message));
    }

cleanup:
    closedir(dir);
    for (size_t i = 0; i < count; i++)
        oxs__free(&server->allocator, names[i]);
    oxs__free(&server->allocator, names);
    return result;
}

oxs_status_t oxs_server_get_model(oxs_server_t *server, const char *name, int64_t version,
                                  oxs_model_t **out)
{
    oxs__registry_t *registry = server->registry;
    oxs_model_t *found = NULL;
    *out = NULL;

    pthread_mutex_lock(&registry->lock);
    for (size_t i = 0; i < registry->count; i++) {
        oxs_model_t *model = registry->models[i];
        if (strcmp(model->name, name) != 0)
            continue;
        /* Version 0 requests the highest version. The list is sorted, so the last match wins. */
        if (version == 0 || model->version == version)
            found = model;
    }
    if (found != NULL)
        oxs_model_acquire(found);
    pthread_mutex_unlock(&registry->lock);

    if (found == NULL)
        return OXS_ERR_NOT_FOUND;
    *out = found;
    return OXS_OK;
}

size_t oxs_server_model_count(oxs_server_t *server)
{
    pthread_mutex_lock(&server->registry->lock);
    size_t count = server->registry->count;
    pthread_mutex_unlock(&server->registry->lock);
    return count;
}

oxs_status_t oxs_server_model_at(oxs_server_t *server, size_t index, oxs_model_t **out)
{
    oxs_status_t result = OXS_ERR_NOT_FOUND;
    *out = NULL;
    pthread_mutex_lock(&server->registry->lock);
    if (index < server->registry->count) {
        *out = server->registry->models[index];
        oxs_model_acquire(*out);
        result = OXS_OK;
    }
    pthread_mutex_unlock(&server->registry->lock);
    return result;
}

/* ---- model handles --------------------------------------------------------------------- */

/* Inputs, outputs and metadata are written while a model is LOADING, which another thread may
 * already have found, and never change after the atomic store of described, which comes before
 * the model's warmup. The accessors below report none of them until then. */
static bool model_loaded(const oxs_model_t *model)
{
    return atomic_load(&model->described);
}

static const oxs_model_metadata_t loading_metadata = {
    .producer_name = "",
    .graph_name = "",
    .domain = "",
    .description = "",
    .opset = -1,
};

void oxs_model_acquire(oxs_model_t *model)
{
    atomic_fetch_add_explicit(&model->refs, 1, memory_order_relaxed);
}

void oxs_model_release(oxs_model_t *model)
{
    if (model == NULL)
        return;
    if (atomic_fetch_sub_explicit(&model->refs, 1, memory_order_acq_rel) == 1)
        oxs__model_free(model);
}

void oxs__model_free(oxs_model_t *model)
{
    const oxs_allocator_t *allocator = &model->server->allocator;
    oxs__scheduler_stop(model);
    oxs__session_unload(model);
    oxs__config_free(model->server, &model->config);
    oxs__free(allocator, model->name);
    oxs__free(allocator, model);
}

const char *oxs_model_name(const oxs_model_t *model)
{
    return model->name;
}

int64_t oxs_model_version(const oxs_model_t *model)
{
    return model->version;
}

oxs_model_state_t oxs_model_state(const oxs_model_t *model)
{
    return (oxs_model_state_t)atomic_load(&model->state);
}

const char *oxs_model_state_reason(const oxs_model_t *model)
{
    return atomic_load(&model->state) == OXS_MODEL_UNAVAILABLE ? model->reason : "";
}

int64_t oxs_model_load_us(const oxs_model_t *model)
{
    /* Written before the store that ends LOADING. */
    return atomic_load(&model->state) != OXS_MODEL_LOADING ? model->load_us : 0;
}

size_t oxs_model_input_count(const oxs_model_t *model)
{
    return model_loaded(model) ? model->input_count : 0;
}

size_t oxs_model_output_count(const oxs_model_t *model)
{
    return model_loaded(model) ? model->output_count : 0;
}

const oxs_tensor_info_t *oxs_model_input(const oxs_model_t *model, size_t index)
{
    return index < oxs_model_input_count(model) ? &model->inputs[index].info : NULL;
}

const oxs_tensor_info_t *oxs_model_output(const oxs_model_t *model, size_t index)
{
    return index < oxs_model_output_count(model) ? &model->outputs[index].info : NULL;
}

static int find_io(const oxs__io_t *ios, size_t count, const char *name, size_t len)
{
    for (size_t i = 0; i < count; i++) {
        const char *candidate = ios[i].info.name;
        if (strlen(candidate) == len && memcmp(candidate, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* The count is read first: it is 0 while LOADING, and only then may the array pointer, which
 * the load writes, be read. */
int oxs_model_find_input(const oxs_model_t *model, const char *name, size_t len)
{
    size_t count = oxs_model_input_count(model);
    return count == 0 ? -1 : find_io(model->inputs, count, name, len);
}

int oxs_model_find_output(const oxs_model_t *model, const char *name, size_t len)
{
    size_t count = oxs_model_output_count(model);
    return count == 0 ? -1 : find_io(model->outputs, count, name, len);
}

const oxs_model_config_t *oxs_model_config(const oxs_model_t *model)
{
    return oxs_model_state(model) == OXS_MODEL_READY ? &model->config.config : NULL;
}

const oxs_model_metadata_t *oxs_model_metadata(const oxs_model_t *model)
{
    return model_loaded(model) ? &model->metadata : &loading_metadata;
}
