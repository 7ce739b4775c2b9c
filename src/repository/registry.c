/*
 * Model registry: every model name of the server, each with its version records in version
 * order. A record is a model object: the one that serves the version, or one that only reports
 * a state (LOADING, UNAVAILABLE with the reason, UNLOADING). The repository code (repository.c)
 * decides what to load; this file keeps the records and loads one model object.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repository/repository.h"

struct oxs__registry {
    oxs_server_t *server;
    pthread_mutex_t lock;
    oxs__entry_t **entries; /* sorted by name */
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
    /* Called once no request can be submitted and the repository thread has stopped. */
    for (size_t i = 0; i < registry->count; i++) {
        oxs__entry_t *entry = registry->entries[i];
        for (size_t v = 0; v < entry->count; v++)
            oxs__scheduler_stop(entry->records[v]);
    }
}

static void entry_free(const oxs_allocator_t *allocator, oxs__entry_t *entry)
{
    oxs__free(allocator, entry->records);
    oxs__free(allocator, entry->seen);
    oxs__free(allocator, entry->name);
    oxs__free(allocator, entry);
}

void oxs__registry_destroy(oxs__registry_t *registry)
{
    if (registry == NULL)
        return;
    const oxs_allocator_t *allocator = &registry->server->allocator;
    for (size_t i = 0; i < registry->count; i++) {
        oxs__entry_t *entry = registry->entries[i];
        for (size_t v = 0; v < entry->count; v++)
            oxs_model_release(entry->records[v]);
        entry_free(allocator, entry);
    }
    oxs__free(allocator, registry->entries);
    pthread_mutex_destroy(&registry->lock);
    oxs__free(allocator, registry);
}

/* Returns the index of name's entry, or where it would go, with *found set. Lock held. */
static size_t entry_index(const oxs__registry_t *registry, const char *name, bool *found)
{
    size_t low = 0, high = registry->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int order = strcmp(registry->entries[mid]->name, name);
        if (order == 0) {
            *found = true;
            return mid;
        }
        if (order < 0)
            low = mid + 1;
        else
            high = mid;
    }
    *found = false;
    return low;
}

/* Grows *items (count used, *capacity) to hold one more pointer. */
static bool grow(const oxs_allocator_t *allocator, void ***items, size_t count, size_t *capacity)
{
    if (count < *capacity)
        return true;
    size_t bigger = *capacity ? *capacity * 2 : 8;
    void **grown = oxs__calloc(allocator, bigger, sizeof(*grown));
    if (grown == NULL)
        return false;
    if (count > 0)
        memcpy(grown, *items, count * sizeof(*grown));
    oxs__free(allocator, *items);
    *items = grown;
    *capacity = bigger;
    return true;
}

oxs__entry_t *oxs__registry_entry(oxs__registry_t *registry, const char *name, bool create)
{
    const oxs_allocator_t *allocator = &registry->server->allocator;
    oxs__entry_t *entry = NULL;
    bool found;

    pthread_mutex_lock(&registry->lock);
    size_t at = entry_index(registry, name, &found);
    if (found) {
        entry = registry->entries[at];
    } else if (create && grow(allocator, (void ***)&registry->entries, registry->count,
                              &registry->capacity)) {
        entry = oxs__calloc(allocator, 1, sizeof(*entry));
        if (entry != NULL)
            entry->name = oxs__strdup(allocator, name);
        if (entry != NULL && entry->name == NULL) {
            oxs__free(allocator, entry);
            entry = NULL;
        }
        if (entry != NULL) {
            entry->repository = -1;
            memmove(&registry->entries[at + 1], &registry->entries[at],
                    (registry->count - at) * sizeof(*registry->entries));
            registry->entries[at] = entry;
            registry->count++;
        }
    }
    pthread_mutex_unlock(&registry->lock);
    return entry;
}

oxs__entry_t *const *oxs__registry_entries(oxs__registry_t *registry, size_t *count)
{
    *count = registry->count;
    return registry->entries;
}

oxs_model_t *oxs__entry_record(const oxs__entry_t *entry, int64_t version)
{
    for (size_t i = 0; i < entry->count; i++)
        if (entry->records[i]->version == version)
            return entry->records[i];
    return NULL;
}

oxs_model_t *oxs__registry_put(oxs__registry_t *registry, oxs__entry_t *entry, int64_t version,
                               oxs_model_t *model, bool *failed)
{
    const oxs_allocator_t *allocator = &registry->server->allocator;
    oxs_model_t *old = NULL;
    *failed = false;

    pthread_mutex_lock(&registry->lock);
    size_t at = 0;
    while (at < entry->count && entry->records[at]->version < version)
        at++;
    bool present = at < entry->count && entry->records[at]->version == version;
    if (present) {
        old = entry->records[at];
        if (model != NULL) {
            entry->records[at] = model;
        } else {
            memmove(&entry->records[at], &entry->records[at + 1],
                    (entry->count - at - 1) * sizeof(*entry->records));
            entry->count--;
        }
    } else if (model != NULL) {
        if (!grow(allocator, (void ***)&entry->records, entry->count, &entry->capacity)) {
            *failed = true;
        } else {
            memmove(&entry->records[at + 1], &entry->records[at],
                    (entry->count - at) * sizeof(*entry->records));
            entry->records[at] = model;
            entry->count++;
        }
    }
    pthread_mutex_unlock(&registry->lock);
    return old;
}

void oxs__registry_drop(oxs__registry_t *registry, oxs__entry_t *entry)
{
    bool found;
    pthread_mutex_lock(&registry->lock);
    size_t at = entry_index(registry, entry->name, &found);
    if (found) {
        memmove(&registry->entries[at], &registry->entries[at + 1],
                (registry->count - at - 1) * sizeof(*registry->entries));
        registry->count--;
    }
    pthread_mutex_unlock(&registry->lock);
    entry_free(&registry->server->allocator, entry);
}

bool oxs__registry_unloaded(oxs__registry_t *registry, const oxs_model_t *freed)
{
    bool found, unloaded = false;
    pthread_mutex_lock(&registry->lock);
    size_t at = entry_index(registry, freed->name, &found);
    oxs_model_t *record = found ? oxs__entry_record(registry->entries[at], freed->version) : NULL;
    if (record != NULL && record->unloading == freed &&
        atomic_load(&record->state) == OXS_MODEL_UNLOADING) {
        record->unloading = NULL;
        atomic_store(&record->state, OXS_MODEL_UNAVAILABLE);
        unloaded = true;
    }
    pthread_mutex_unlock(&registry->lock);
    return unloaded;
}

/* ---- names ---------------------------------------------------------------------------------- */

oxs_status_t oxs_model_name_check(const char *name, size_t len, char *error, size_t error_size)
{
    static const char rule[] = "expected 1 to 128 letters, digits, '_', '-' or '.', not "
                               "starting with '.'";
    if (len == 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "invalid model name \"\": %s", rule);
    bool ok = len <= 128 && name[0] != '.';
    for (size_t i = 0; i < len && ok; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.';
    }
    if (!ok) {
        /* The name may hold any bytes: show printable ASCII only, and at most 64 of them. */
        char shown[65];
        size_t n = 0;
        for (size_t i = 0; i < len && n < 64; i++)
            shown[n++] = name[i] >= 0x20 && name[i] < 0x7f && name[i] != '"' ? name[i] : '?';
        shown[n] = '\0';
        if (len > 64)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "invalid model name of %zu bytes starting \"%s\": %s", len, shown,
                             rule);
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "invalid model name \"%s\": %s", shown, rule);
    }
    if (len == 5 && memcmp(name, "stats", 5) == 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "invalid model name \"stats\": the word is reserved for the model "
                         "statistics endpoint");
    return OXS_OK;
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

/* Allocates a model object in state LOADING with one reference, with metrics or without. */
static oxs_model_t *model_alloc(oxs_server_t *server, const char *name, int64_t version,
                                bool with_metrics)
{
    oxs_model_t *model = oxs__calloc(&server->allocator, 1, sizeof(*model));
    if (model == NULL)
        return NULL;
    if (with_metrics && (model->metrics = oxs__metrics_create(&server->allocator)) == NULL) {
        oxs__free(&server->allocator, model);
        return NULL;
    }
    atomic_init(&model->refs, 1);
    atomic_init(&model->state, OXS_MODEL_LOADING);
    atomic_init(&model->described, false);
    model->server = server;
    model->version = version;
    model->metadata.opset = -1;
    model->metadata.producer_name = model->metadata.graph_name = "";
    model->metadata.domain = model->metadata.description = "";
    model->name = oxs__strdup(&server->allocator, name);
    if (model->name == NULL) {
        oxs__metrics_destroy(&server->allocator, model->metrics);
        oxs__free(&server->allocator, model);
        return NULL;
    }
    return model;
}

oxs_model_t *oxs__model_create(oxs_server_t *server, const char *name, int64_t version)
{
    return model_alloc(server, name, version, true);
}

oxs_model_t *oxs__model_stub(oxs_server_t *server, const char *name, int64_t version,
                             oxs_model_state_t state, const char *reason, bool dormant)
{
    oxs_model_t *model = model_alloc(server, name, version, false);
    if (model == NULL)
        return NULL;
    snprintf(model->reason, sizeof(model->reason), "%s", reason);
    model->dormant = dormant;
    atomic_store(&model->state, state);
    return model;
}

void oxs__model_fail(oxs_model_t *model, const char *reason, const char *path)
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
                                    const char *config_text, size_t config_len,
                                    const char *config_file, char *message, size_t size)
{
    oxs_status_t result = OXS_OK;
    if (config_text != NULL)
        result = oxs__config_parse(model->server, config_text, config_len, config_file,
                                   &model->config, message, size);
    else
        oxs__config_defaults(model->server, &model->config.config);
    if (config_text == NULL)
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

oxs_status_t oxs__model_load(oxs_model_t *model, const char *path, const char *config_text,
                             size_t config_len, const char *config_file, char *error,
                             size_t error_size)
{
    char message[512];
    int64_t started = oxs__now_us();
    oxs_status_t result = load_configured(model, path, config_text, config_len, config_file,
                                          message, sizeof(message));
    model->load_us = oxs__now_us() - started;
    if (result != OXS_OK) {
        oxs__scheduler_stop(model);
        /* Once described, a reader may hold pointers into the model's inputs: they stay until
         * the model is freed. */
        if (!atomic_load(&model->described))
            oxs__session_unload(model);
        oxs__config_free(model->server, &model->config);
        model->failed = true;
        oxs__model_fail(model, message, path);
        return oxs__fail(result, error, error_size, "%s", model->reason);
    }
    atomic_store(&model->state, OXS_MODEL_READY);
    log_load(model, path);
    return OXS_OK;
}

/* ---- lookups -------------------------------------------------------------------------------- */

oxs_status_t oxs_server_get_model(oxs_server_t *server, const char *name, int64_t version,
                                  oxs_model_t **out)
{
    oxs__registry_t *registry = server->registry;
    oxs_model_t *found = NULL;
    bool present;
    *out = NULL;

    pthread_mutex_lock(&registry->lock);
    size_t at = entry_index(registry, name, &present);
    if (present) {
        oxs__entry_t *entry = registry->entries[at];
        if (version != 0) {
            found = oxs__entry_record(entry, version);
        } else {
            /* The highest READY version, else the highest one, so that the caller can report
             * its state. */
            for (size_t i = entry->count; i-- > 0 && found == NULL;)
                if (atomic_load(&entry->records[i]->state) == OXS_MODEL_READY)
                    found = entry->records[i];
            if (found == NULL && entry->count > 0)
                found = entry->records[entry->count - 1];
        }
    }
    if (found != NULL)
        oxs_model_acquire(found);
    pthread_mutex_unlock(&registry->lock);

    if (found == NULL)
        return OXS_ERR_NOT_FOUND;
    *out = found;
    return OXS_OK;
}

size_t oxs_server_ready_versions(oxs_server_t *server, const char *name, int64_t *versions,
                                 size_t max)
{
    oxs__registry_t *registry = server->registry;
    size_t count = 0;
    bool present;
    pthread_mutex_lock(&registry->lock);
    size_t at = entry_index(registry, name, &present);
    for (size_t i = 0; present && i < registry->entries[at]->count; i++) {
        const oxs_model_t *record = registry->entries[at]->records[i];
        if (atomic_load(&record->state) != OXS_MODEL_READY)
            continue;
        if (count < max)
            versions[count] = record->version;
        count++;
    }
    pthread_mutex_unlock(&registry->lock);
    return count;
}

size_t oxs_server_model_count(oxs_server_t *server)
{
    oxs__registry_t *registry = server->registry;
    size_t count = 0;
    pthread_mutex_lock(&registry->lock);
    for (size_t i = 0; i < registry->count; i++)
        count += registry->entries[i]->count;
    pthread_mutex_unlock(&registry->lock);
    return count;
}

oxs_status_t oxs_server_model_at(oxs_server_t *server, size_t index, oxs_model_t **out)
{
    oxs__registry_t *registry = server->registry;
    oxs_status_t result = OXS_ERR_NOT_FOUND;
    *out = NULL;
    pthread_mutex_lock(&registry->lock);
    for (size_t i = 0; i < registry->count; i++) {
        oxs__entry_t *entry = registry->entries[i];
        if (index < entry->count) {
            *out = entry->records[index];
            oxs_model_acquire(*out);
            result = OXS_OK;
            break;
        }
        index -= entry->count;
    }
    pthread_mutex_unlock(&registry->lock);
    return result;
}

bool oxs_server_ready(oxs_server_t *server, bool strict, char *why, size_t why_size)
{
    oxs__registry_t *registry = server->registry;
    bool ready = true;
    pthread_mutex_lock(&registry->lock);
    for (size_t i = 0; i < registry->count && ready; i++) {
        oxs__entry_t *entry = registry->entries[i];
        bool wanted = false, serving = false, loading = false;
        for (size_t v = 0; v < entry->count; v++) {
            const oxs_model_t *record = entry->records[v];
            int state = atomic_load(&record->state);
            wanted |= !record->dormant;
            serving |= state == OXS_MODEL_READY;
            loading |= !record->dormant && state == OXS_MODEL_LOADING;
        }
        /* A version loading or failing beside a READY one leaves the model serving. */
        if (wanted && !serving)
            ready = strict ? false : !loading;
        if (!ready && why != NULL && why_size > 0)
            snprintf(why, why_size, "model \"%s\" has no READY version%s", entry->name,
                     loading ? " yet: it is loading" : "");
    }
    pthread_mutex_unlock(&registry->lock);
    return ready;
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
        oxs__control_retire(model);
}

void oxs__model_free(oxs_model_t *model)
{
    const oxs_allocator_t *allocator = &model->server->allocator;
    oxs__scheduler_stop(model);
    oxs__session_unload(model);
    oxs__config_free(model->server, &model->config);
    oxs__metrics_destroy(allocator, model->metrics);
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
