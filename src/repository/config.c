/*
 * Per-model configuration: reads config.json with jansson, checks every key against its type
 * and range, fills what the file leaves out from the server's options, and completes batching
 * from the model's own shapes. Errors name the file, the key and the allowed values.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "core/internal.h"

#define MAX_BATCH_SIZE_LIMIT 65536
#define MAX_QUEUE_DELAY_US_LIMIT INT64_C(60000000)  /* one minute */
#define TIMEOUT_US_LIMIT INT64_C(3600000000)        /* one hour */
#define MAX_INSTANCES 256
#define MAX_THREADS 1024
#define MAX_GPU_ID 1023
#define MAX_WARMUP_BODIES 64

const char *oxs_instance_kind_name(oxs_instance_kind_t kind)
{
    return kind == OXS_INSTANCE_GPU ? "gpu" : "cpu";
}

const char *oxs_version_policy_name(oxs_version_policy_t policy)
{
    switch (policy) {
    case OXS_VERSION_ALL: return "all";
    case OXS_VERSION_SPECIFIC: return "specific";
    default: return "latest";
    }
}

const char *oxs_execution_provider_name(oxs_execution_provider_t provider)
{
    switch (provider) {
    case OXS_EP_CUDA: return "cuda";
    case OXS_EP_TENSORRT: return "tensorrt";
    default: return "cpu";
    }
}

const char *oxs_graph_opt_name(oxs_graph_opt_t level)
{
    switch (level) {
    case OXS_GRAPH_OPT_DISABLE: return "disable";
    case OXS_GRAPH_OPT_BASIC: return "basic";
    case OXS_GRAPH_OPT_EXTENDED: return "extended";
    default: return "all";
    }
}

/* The parse of one file: where errors go and what names it. */
typedef struct parse {
    const char *file; /* as errors name it, such as "config.json" */
    char *error;
    size_t error_size;
} parse_t;

__attribute__((format(printf, 3, 4))) static oxs_status_t fail(const parse_t *p,
                                                               const char *key,
                                                               const char *format, ...)
{
    char detail[384];
    va_list args;
    va_start(args, format);
    vsnprintf(detail, sizeof(detail), format, args);
    va_end(args);
    return oxs__fail(OXS_ERR_INVALID_ARGUMENT, p->error, p->error_size, "%s: %s%s%s", p->file,
                     key != NULL ? key : "", key != NULL ? ": " : "", detail);
}

static const char *type_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Checks that object has only the listed keys. */
static oxs_status_t check_keys(const parse_t *p, const char *path, const json_t *object,
                               const char *const *keys, size_t count)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)object, key, value) {
        bool known = false;
        for (size_t i = 0; i < count && !known; i++)
            known = strcmp(key, keys[i]) == 0;
        if (known)
            continue;
        char allowed[256] = "";
        size_t used = 0;
        for (size_t i = 0; i < count && used < sizeof(allowed); i++) {
            int n = snprintf(allowed + used, sizeof(allowed) - used, "%s%s", i ? ", " : "",
                             keys[i]);
            used += n > 0 ? (size_t)n : 0;
        }
        char where[128];
        snprintf(where, sizeof(where), "%s%s%.64s", path, path[0] ? "." : "", key);
        return fail(p, where, "unknown key; expected one of %s", allowed);
    }
    return OXS_OK;
}

static oxs_status_t read_int(const parse_t *p, const char *key, const json_t *value,
                             int64_t min, int64_t max, int64_t *out)
{
    if (!json_is_integer(value))
        return fail(p, key, "expected an integer from %" PRId64 " to %" PRId64 ", got %s", min,
                    max, type_name(value));
    json_int_t number = json_integer_value(value);
    if (number < min || number > max)
        return fail(p, key, "value %lld is out of range, expected %" PRId64 " to %" PRId64,
                    (long long)number, min, max);
    *out = number;
    return OXS_OK;
}

static oxs_status_t read_small_int(const parse_t *p, const char *key, const json_t *value,
                                   int min, int max, int *out)
{
    int64_t wide = 0;
    oxs_status_t status = read_int(p, key, value, min, max, &wide);
    if (status == OXS_OK)
        *out = (int)wide;
    return status;
}

static oxs_status_t read_bool(const parse_t *p, const char *key, const json_t *value, int *out)
{
    if (!json_is_boolean(value))
        return fail(p, key, "expected true or false, got %s", type_name(value));
    *out = json_is_true(value);
    return OXS_OK;
}

/* Reads a string that must be one of names; *out is its index. */
static oxs_status_t read_choice(const parse_t *p, const char *key, const json_t *value,
                                const char *const *names, int count, int *out)
{
    char allowed[128] = "";
    size_t used = 0;
    for (int i = 0; i < count && used < sizeof(allowed); i++) {
        int n = snprintf(allowed + used, sizeof(allowed) - used, "%s\"%s\"", i ? ", " : "",
                         names[i]);
        used += n > 0 ? (size_t)n : 0;
    }
    if (!json_is_string(value))
        return fail(p, key, "expected one of %s, got %s", allowed, type_name(value));
    for (int i = 0; i < count; i++) {
        if (strcmp(json_string_value(value), names[i]) == 0) {
            *out = i;
            return OXS_OK;
        }
    }
    return fail(p, key, "value \"%.64s\" is not valid, expected one of %s",
                json_string_value(value), allowed);
}

static oxs_status_t read_object(const parse_t *p, const char *key, const json_t *value)
{
    if (!json_is_object(value))
        return fail(p, key, "expected an object, got %s", type_name(value));
    return OXS_OK;
}

/* ---- sections ------------------------------------------------------------------------------ */

static oxs_status_t read_dynamic_batching(const parse_t *p, const json_t *section,
                                          oxs_model_config_t *config, bool *delay_given,
                                          bool *queue_given)
{
    static const char *const keys[] = {"max_queue_delay_us", "preferred_batch_sizes",
                                       "max_queue_size", "default_timeout_us", "priority_levels",
                                       "default_priority", "target_p99_ms"};
    oxs_status_t status = read_object(p, "dynamic_batching", section);
    if (status == OXS_OK)
        status = check_keys(p, "dynamic_batching", section, keys, sizeof(keys) / sizeof(keys[0]));
    if (status != OXS_OK)
        return status;
    config->dynamic_batching = 1;

    const char *key;
    json_t *value;
    int default_priority = 0;
    json_object_foreach((json_t *)section, key, value) {
        char path[128];
        snprintf(path, sizeof(path), "dynamic_batching.%.64s", key);
        if (strcmp(key, "max_queue_delay_us") == 0) {
            status = read_int(p, path, value, 0, MAX_QUEUE_DELAY_US_LIMIT,
                              &config->max_queue_delay_us);
            *delay_given = true;
        } else if (strcmp(key, "max_queue_size") == 0) {
            status = read_small_int(p, path, value, 1, 1000000, &config->max_queue_size);
            *queue_given = true;
        } else if (strcmp(key, "default_timeout_us") == 0) {
            status = read_int(p, path, value, 0, TIMEOUT_US_LIMIT, &config->default_timeout_us);
        } else if (strcmp(key, "priority_levels") == 0) {
            status = read_small_int(p, path, value, 0, OXS_MAX_PRIORITY_LEVELS,
                                    &config->priority_levels);
        } else if (strcmp(key, "default_priority") == 0) {
            status = read_small_int(p, path, value, 0, OXS_MAX_PRIORITY_LEVELS,
                                    &default_priority);
        } else if (strcmp(key, "target_p99_ms") == 0) {
            if (!json_is_number(value) || json_number_value(value) <= 0 ||
                json_number_value(value) > 60000)
                return fail(p, path, "expected a number of milliseconds above 0 and at most "
                            "60000, got %s", json_is_number(value) ? "a value out of range"
                                                                   : type_name(value));
            config->target_p99_ms = json_number_value(value);
        } else {
            /* preferred_batch_sizes: checked against max_batch_size once it is known. */
            if (!json_is_array(value) || json_array_size(value) > OXS_MAX_PREFERRED_BATCH_SIZES)
                return fail(p, path, "expected an array of at most %d batch sizes, got %s",
                            OXS_MAX_PREFERRED_BATCH_SIZES,
                            json_is_array(value) ? "a longer array" : type_name(value));
            for (size_t i = 0; i < json_array_size(value) && status == OXS_OK; i++) {
                char item[160];
                snprintf(item, sizeof(item), "%s[%zu]", path, i);
                status = read_small_int(p, item, json_array_get(value, i), 1,
                                        MAX_BATCH_SIZE_LIMIT,
                                        &config->preferred_batch_sizes[i]);
            }
            config->preferred_batch_size_count = (int)json_array_size(value);
        }
        if (status != OXS_OK)
            return status;
    }
    if (*delay_given && config->target_p99_ms > 0)
        return fail(p, "dynamic_batching", "max_queue_delay_us and target_p99_ms are both "
                    "given; expected one: a fixed delay or a latency target");
    if (default_priority != 0) {
        if (default_priority > config->priority_levels)
            return fail(p, "dynamic_batching.default_priority",
                        "value %d is out of range, expected 1 to priority_levels (%d)",
                        default_priority, config->priority_levels);
        config->default_priority = default_priority;
    }
    return OXS_OK;
}

static oxs_status_t read_instance_groups(const parse_t *p, const json_t *groups,
                                         oxs_model_config_t *config)
{
    static const char *const keys[] = {"count", "kind", "gpus"};
    static const char *const kinds[] = {"cpu", "gpu"};
    if (!json_is_array(groups) || json_array_size(groups) == 0 ||
        json_array_size(groups) > OXS_MAX_INSTANCE_GROUPS)
        return fail(p, "instance_group", "expected an array of 1 to %d groups, got %s",
                    OXS_MAX_INSTANCE_GROUPS,
                    json_is_array(groups) ? "an array of another length" : type_name(groups));

    int total = 0;
    int default_count = config->instance_groups[0].count; /* the server's --workers */
    for (size_t i = 0; i < json_array_size(groups); i++) {
        const json_t *group = json_array_get(groups, i);
        oxs_instance_group_t *out = &config->instance_groups[i];
        char path[64];
        snprintf(path, sizeof(path), "instance_group[%zu]", i);
        oxs_status_t status = read_object(p, path, group);
        if (status == OXS_OK)
            status = check_keys(p, path, group, keys, sizeof(keys) / sizeof(keys[0]));
        if (status != OXS_OK)
            return status;

        out->count = default_count;
        out->kind = OXS_INSTANCE_CPU;
        const json_t *value;
        char item[96];
        if ((value = json_object_get(group, "count")) != NULL) {
            snprintf(item, sizeof(item), "%s.count", path);
            if ((status = read_small_int(p, item, value, 1, MAX_INSTANCES, &out->count)) != OXS_OK)
                return status;
        }
        if ((value = json_object_get(group, "kind")) != NULL) {
            int kind = 0;
            snprintf(item, sizeof(item), "%s.kind", path);
            if ((status = read_choice(p, item, value, kinds, 2, &kind)) != OXS_OK)
                return status;
            out->kind = (oxs_instance_kind_t)kind;
        }
        if ((value = json_object_get(group, "gpus")) != NULL) {
            snprintf(item, sizeof(item), "%s.gpus", path);
            if (!json_is_array(value) || json_array_size(value) > OXS_MAX_GPUS)
                return fail(p, item, "expected an array of at most %d GPU ids, got %s",
                            OXS_MAX_GPUS,
                            json_is_array(value) ? "a longer array" : type_name(value));
            if (out->kind != OXS_INSTANCE_GPU)
                return fail(p, item, "GPU ids are given for a group of kind cpu; expected "
                            "\"kind\": \"gpu\" or no gpus");
            for (size_t g = 0; g < json_array_size(value); g++) {
                char id[112];
                snprintf(id, sizeof(id), "%s[%zu]", item, g);
                if ((status = read_small_int(p, id, json_array_get(value, g), 0, MAX_GPU_ID,
                                             &out->gpus[g])) != OXS_OK)
                    return status;
            }
            out->gpu_count = (int)json_array_size(value);
        }
        total += out->count;
    }
    if (total > MAX_INSTANCES)
        return fail(p, "instance_group", "%d instances in all, expected at most %d", total,
                    MAX_INSTANCES);
    config->instance_group_count = (int)json_array_size(groups);
    config->instance_count = total;
    return OXS_OK;
}

static oxs_status_t read_version_policy(const parse_t *p, const json_t *policy,
                                        oxs_model_config_t *config)
{
    static const char *const keys[] = {"latest", "all", "specific"};
    oxs_status_t status = read_object(p, "version_policy", policy);
    if (status != OXS_OK)
        return status;
    if (json_object_size(policy) != 1)
        return fail(p, "version_policy", "expected exactly one of {\"latest\": "
                    "{\"num_versions\": N}}, {\"all\": {}} or {\"specific\": {\"versions\": "
                    "[...]}}");
    if ((status = check_keys(p, "version_policy", policy, keys, 3)) != OXS_OK)
        return status;

    const json_t *value;
    if ((value = json_object_get(policy, "latest")) != NULL) {
        static const char *const latest_keys[] = {"num_versions"};
        config->version_policy = OXS_VERSION_LATEST;
        config->num_versions = 1;
        if ((status = read_object(p, "version_policy.latest", value)) != OXS_OK ||
            (status = check_keys(p, "version_policy.latest", value, latest_keys, 1)) != OXS_OK)
            return status;
        const json_t *count = json_object_get(value, "num_versions");
        if (count != NULL)
            return read_small_int(p, "version_policy.latest.num_versions", count, 1,
                                  OXS_MAX_POLICY_VERSIONS, &config->num_versions);
        return OXS_OK;
    }
    if ((value = json_object_get(policy, "all")) != NULL) {
        config->version_policy = OXS_VERSION_ALL;
        if ((status = read_object(p, "version_policy.all", value)) != OXS_OK)
            return status;
        return check_keys(p, "version_policy.all", value, NULL, 0);
    }
    static const char *const specific_keys[] = {"versions"};
    value = json_object_get(policy, "specific");
    config->version_policy = OXS_VERSION_SPECIFIC;
    if ((status = read_object(p, "version_policy.specific", value)) != OXS_OK ||
        (status = check_keys(p, "version_policy.specific", value, specific_keys, 1)) != OXS_OK)
        return status;
    const json_t *versions = json_object_get(value, "versions");
    if (versions == NULL || !json_is_array(versions) || json_array_size(versions) == 0 ||
        json_array_size(versions) > OXS_MAX_POLICY_VERSIONS)
        return fail(p, "version_policy.specific.versions",
                    "expected an array of 1 to %d positive versions", OXS_MAX_POLICY_VERSIONS);
    for (size_t i = 0; i < json_array_size(versions); i++) {
        char item[96];
        snprintf(item, sizeof(item), "version_policy.specific.versions[%zu]", i);
        if ((status = read_int(p, item, json_array_get(versions, i), 1, INT64_MAX,
                               &config->versions[i])) != OXS_OK)
            return status;
    }
    config->version_count = (int)json_array_size(versions);
    return OXS_OK;
}

static oxs_status_t read_providers(const parse_t *p, const json_t *list,
                                   oxs_model_config_t *config)
{
    static const char *const names[] = {"cpu", "cuda", "tensorrt"};
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > OXS_MAX_EXECUTION_PROVIDERS)
        return fail(p, "execution_providers", "expected an array of 1 to %d of \"cpu\", "
                    "\"cuda\", \"tensorrt\", got %s", OXS_MAX_EXECUTION_PROVIDERS,
                    json_is_array(list) ? "an array of another length" : type_name(list));
    for (size_t i = 0; i < json_array_size(list); i++) {
        char item[64];
        int provider = 0;
        snprintf(item, sizeof(item), "execution_providers[%zu]", i);
        oxs_status_t status = read_choice(p, item, json_array_get(list, i), names, 3, &provider);
        if (status != OXS_OK)
            return status;
        for (size_t j = 0; j < i; j++)
            if ((int)config->execution_providers[j] == provider)
                return fail(p, item, "\"%s\" is listed twice", names[provider]);
        config->execution_providers[i] = (oxs_execution_provider_t)provider;
    }
    config->execution_provider_count = (int)json_array_size(list);
    return OXS_OK;
}

/* Keeps each warmup request body as compact JSON text in one allocation. */
static oxs_status_t read_warmup(const parse_t *p, const json_t *warmup,
                                oxs_model_config_t *config, const oxs_allocator_t *allocator,
                                char **storage)
{
    if (json_is_string(warmup)) {
        if (strcmp(json_string_value(warmup), "random") != 0)
            return fail(p, "warmup", "value \"%.64s\" is not valid, expected \"random\" or an "
                        "array of KServe v2 infer request bodies", json_string_value(warmup));
        config->warmup_random = 1;
        return OXS_OK;
    }
    if (!json_is_array(warmup) || json_array_size(warmup) > MAX_WARMUP_BODIES)
        return fail(p, "warmup", "expected \"random\" or an array of at most %d KServe v2 infer "
                    "request bodies, got %s", MAX_WARMUP_BODIES,
                    json_is_array(warmup) ? "a longer array" : type_name(warmup));

    size_t count = json_array_size(warmup);
    char *texts[MAX_WARMUP_BODIES];
    size_t total = (count + 1) * sizeof(char *);
    for (size_t i = 0; i < count; i++) {
        const json_t *body = json_array_get(warmup, i);
        if (!json_is_object(body)) {
            for (size_t j = 0; j < i; j++)
                free(texts[j]);
            char item[32];
            snprintf(item, sizeof(item), "warmup[%zu]", i);
            return fail(p, item, "expected an infer request object, got %s", type_name(body));
        }
        texts[i] = json_dumps(body, JSON_COMPACT);
        total += texts[i] != NULL ? strlen(texts[i]) + 1 : 1;
    }

    /* An array of pointers followed by the texts they point to, freed as one block. */
    char *block = oxs__malloc(allocator, total);
    oxs_status_t status = OXS_OK;
    if (block == NULL) {
        status = oxs__fail(OXS_ERR_OUT_OF_MEMORY, p->error, p->error_size, "out of memory");
    } else {
        char **bodies = (char **)(void *)block;
        char *text = block + (count + 1) * sizeof(char *);
        for (size_t i = 0; i < count; i++) {
            size_t len = texts[i] != NULL ? strlen(texts[i]) : 0;
            if (len > 0)
                memcpy(text, texts[i], len);
            text[len] = '\0';
            bodies[i] = text;
            text += len + 1;
        }
        bodies[count] = NULL;
        config->warmup_bodies = (const char *const *)bodies;
        config->warmup_count = count;
        *storage = block;
    }
    for (size_t i = 0; i < count; i++)
        free(texts[i]);
    return status;
}

/* ---- the file ------------------------------------------------------------------------------ */

void oxs__config_defaults(const oxs_server_t *server, oxs_model_config_t *config)
{
    const oxs_options_t *options = &server->options;
    memset(config, 0, sizeof(*config));
    config->max_queue_size = options->queue_size;
    config->instance_group_count = 1;
    config->instance_groups[0].count = options->workers;
    config->instance_groups[0].kind = OXS_INSTANCE_CPU;
    config->instance_count = options->workers;
    config->num_versions = 1;
    config->inter_op_threads = 1;
    config->graph_optimization = options->graph_optimization;
    config->execution_provider_count = 1;
    config->execution_providers[0] = OXS_EP_CPU;
}

oxs_status_t oxs__config_read(const oxs_server_t *server, const char *path, const char *file,
                              oxs__config_t *out, char *error, size_t error_size)
{
    parse_t p = {.file = file, .error = error, .error_size = error_size};
    size_t len = 0;
    char *text = NULL;
    int read_errno = oxs__read_file(&server->allocator, path, OXS__MAX_CONFIG_BYTES, &text, &len);
    if (read_errno == EFBIG)
        return fail(&p, NULL, "is larger than %d bytes", OXS__MAX_CONFIG_BYTES);
    if (read_errno != 0)
        return fail(&p, NULL, "cannot be read: %s", strerror(read_errno));
    oxs_status_t status = oxs__config_parse(server, text, len, file, out, error, error_size);
    oxs__free(&server->allocator, text);
    return status;
}

oxs_status_t oxs__config_parse(const oxs_server_t *server, const char *text, size_t len,
                               const char *file, oxs__config_t *out, char *error,
                               size_t error_size)
{
    static const char *const keys[] = {
        "max_batch_size",   "dynamic_batching",   "instance_group",
        "allow_cpu_fallback", "version_policy",   "intra_op_threads",
        "inter_op_threads", "graph_optimization_level", "execution_providers",
        "warmup", "max_queue_size",
    };
    static const char *const levels[] = {"disable", "basic", "extended", "all"};
    static const oxs_graph_opt_t level_values[] = {OXS_GRAPH_OPT_DISABLE, OXS_GRAPH_OPT_BASIC,
                                                   OXS_GRAPH_OPT_EXTENDED, OXS_GRAPH_OPT_ALL};
    parse_t p = {.file = file, .error = error, .error_size = error_size};
    oxs_model_config_t *config = &out->config;
    oxs__config_defaults(server, config);
    snprintf(out->file, sizeof(out->file), "%s", file);
    out->batch_given = false;
    out->groups_given = false;
    out->warmup_storage = NULL;

    json_error_t parse_error;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &parse_error);
    if (root == NULL)
        return fail(&p, NULL, "invalid JSON at line %d, column %d: %s", parse_error.line,
                    parse_error.column, parse_error.text);

    oxs_status_t status = read_object(&p, "top level", root);
    if (status == OXS_OK)
        status = check_keys(&p, "", root, keys, sizeof(keys) / sizeof(keys[0]));
    config->from_file = 1;

    bool delay_given = false;
    bool queue_given = false;
    bool top_queue_given = false;
    const char *key;
    json_t *value;
    json_object_foreach(root, key, value) {
        if (status != OXS_OK)
            break;
        if (strcmp(key, "max_batch_size") == 0) {
            status = read_small_int(&p, key, value, 0, MAX_BATCH_SIZE_LIMIT,
                                    &config->max_batch_size);
            out->batch_given = true;
        } else if (strcmp(key, "dynamic_batching") == 0) {
            status = read_dynamic_batching(&p, value, config, &delay_given, &queue_given);
        } else if (strcmp(key, "instance_group") == 0) {
            status = read_instance_groups(&p, value, config);
            out->groups_given = true;
        } else if (strcmp(key, "allow_cpu_fallback") == 0) {
            status = read_bool(&p, key, value, &config->allow_cpu_fallback);
        } else if (strcmp(key, "version_policy") == 0) {
            status = read_version_policy(&p, value, config);
        } else if (strcmp(key, "intra_op_threads") == 0) {
            status = read_small_int(&p, key, value, 0, MAX_THREADS, &config->intra_op_threads);
        } else if (strcmp(key, "inter_op_threads") == 0) {
            status = read_small_int(&p, key, value, 1, MAX_THREADS, &config->inter_op_threads);
        } else if (strcmp(key, "graph_optimization_level") == 0) {
            int level = 0;
            status = read_choice(&p, key, value, levels, 4, &level);
            config->graph_optimization = level_values[level];
        } else if (strcmp(key, "execution_providers") == 0) {
            status = read_providers(&p, value, config);
        } else if (strcmp(key, "max_queue_size") == 0) {
            status = read_small_int(&p, key, value, 1, 1000000, &config->max_queue_size);
            top_queue_given = true;
        } else if (strcmp(key, "warmup") == 0) {
            status = read_warmup(&p, value, config, &server->allocator, &out->warmup_storage);
        }
    }
    json_decref(root);

    if (status == OXS_OK && queue_given && top_queue_given)
        status = fail(&p, "max_queue_size", "is given both at the top level and in "
                      "dynamic_batching; expected one of them");
    if (status == OXS_OK && config->dynamic_batching && out->batch_given &&
        config->max_batch_size == 0)
        status = fail(&p, "dynamic_batching", "is given, but max_batch_size is 0; expected a "
                      "max_batch_size of at least 1 to batch requests");
    for (int i = 0; status == OXS_OK && i < config->preferred_batch_size_count; i++) {
        if (out->batch_given && config->preferred_batch_sizes[i] > config->max_batch_size)
            status = fail(&p, "dynamic_batching.preferred_batch_sizes",
                          "value %d is larger than max_batch_size %d",
                          config->preferred_batch_sizes[i], config->max_batch_size);
    }
    if (status == OXS_OK && config->priority_levels > 0 && config->default_priority == 0)
        config->default_priority = config->priority_levels;
    if (status != OXS_OK)
        oxs__config_free(server, out);
    return status;
}

void oxs__config_free(const oxs_server_t *server, oxs__config_t *config)
{
    oxs__free(&server->allocator, config->warmup_storage);
    config->warmup_storage = NULL;
    config->config.warmup_bodies = NULL;
    config->config.warmup_count = 0;
}

oxs_status_t oxs__config_complete(oxs_model_t *model, oxs__config_t *file, char *error,
                                  size_t error_size)
{
    oxs_model_config_t *config = &file->config;

    /* A leading dim that is dynamic on every input and output is the batch dimension. */
    bool batchable = model->input_count > 0 && model->output_count > 0;
    for (size_t i = 0; i < model->input_count && batchable; i++)
        batchable = model->inputs[i].info.rank >= 1 && model->inputs[i].dims[0] < 0;
    for (size_t i = 0; i < model->output_count && batchable; i++)
        batchable = model->outputs[i].info.rank >= 1 && model->outputs[i].dims[0] < 0;

    if (!file->batch_given) {
        config->max_batch_size = batchable ? OXS_DEFAULT_MAX_BATCH_SIZE : 0;
        config->dynamic_batching = batchable;
    } else if (config->max_batch_size > 0 && !batchable) {
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "%s: max_batch_size: value %d needs a leading dim that is "
                         "dynamic on every input and output, which the model does not have; "
                         "expected 0",
                         file->file, config->max_batch_size);
    }
    if (config->max_batch_size == 0)
        config->dynamic_batching = 0;

    /* Without an instance_group, keep instances x intra-op threads within the cores. */
    int per_instance = config->intra_op_threads > 0 ? config->intra_op_threads
                                                    : model->server->options.intra_op_threads;
    int cores = oxs__cpu_count();
    if (!file->groups_given && config->instance_count * per_instance > cores) {
        int count = cores / per_instance > 0 ? cores / per_instance : 1;
        oxs_log_field_t fields[] = {
            {.key = "instances", .num = config->instance_count},
            {.key = "chosen", .num = count},
            {.key = "intra_op_threads", .num = per_instance},
            {.key = "cores", .num = cores},
        };
        oxs__log(model->server, OXS_LOG_WARN, model->name,
                 "fewer instances, so that instances x intra-op threads fit the cores; set "
                 "instance_group in config.json to choose",
                 fields, sizeof(fields) / sizeof(fields[0]));
        config->instance_groups[0].count = count;
        config->instance_count = count;
    }
    for (int i = 0; i < config->preferred_batch_size_count; i++) {
        if (config->preferred_batch_sizes[i] > config->max_batch_size)
            return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                             "%s: dynamic_batching.preferred_batch_sizes: value %d is "
                             "larger than max_batch_size %d",
                             file->file, config->preferred_batch_sizes[i], config->max_batch_size);
    }
    return OXS_OK;
}
