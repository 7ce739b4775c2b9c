/*
 * Model repositories and their control: which versions of which models load, when they reload,
 * and the repository thread that runs every such action one at a time.
 *
 * A scan lists each repository's model folders and each model's version folders and reads
 * config.json with its version_policy. A version to serve that is new, or whose files or
 * config.json changed, is loaded beside the record that serves it now. It replaces that record
 * only once READY, so no request is dropped, and a failed load keeps the old record serving.
 * Requests that hold a replaced or unloaded model finish on it. The last reference hands it to
 * the repository thread, which frees it (oxs__control_retire).
 *
 * Threads: one repository thread per server (oxs-repository), started with the server. It runs
 * queued actions, the poll and the freeing of retired models. The first load of
 * oxs_server_load_repositories runs on the caller's thread under the same repository lock.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "repository/repository.h"

#define MAX_REPOSITORIES 16
#define MAX_QUEUED_ACTIONS 64
/* Levels of subfolders below a version folder whose files count in its signature. */
#define SIGNATURE_DEPTH 3
#define PATH_BYTES 4096

typedef struct action {
    oxs_repository_action_t kind;
    char name[129];
    oxs_repository_done_fn done;
    void *user;
    struct action *next;
} action_t;

struct oxs__control {
    oxs_server_t *server;
    pthread_mutex_t repository_lock; /* serializes repository actions */
    char *paths[MAX_REPOSITORIES];   /* as given, for messages */
    char *real[MAX_REPOSITORIES];    /* resolved, to keep links inside */
    int repository_count;

    pthread_mutex_t lock; /* everything below */
    pthread_cond_t wake;
    action_t *head;
    action_t *tail;
    int queued;
    oxs_model_t *retired;
    bool polling;
    int64_t next_poll_us;
    bool stopping;
    bool running; /* the thread takes retired models */
    pthread_t thread;
};

const char *oxs_control_mode_name(oxs_control_mode_t mode)
{
    switch (mode) {
    case OXS_CONTROL_NONE:
        return "none";
    case OXS_CONTROL_POLL:
        return "poll";
    case OXS_CONTROL_EXPLICIT:
        return "explicit";
    }
    return "unknown";
}

/* ---- folders ------------------------------------------------------------------------------- */

/* Opens a folder for readdir, or returns NULL with errno set. It goes through open and fdopendir
 * because ThreadSanitizer does not see the descriptor that opendir creates: closing it then looks
 * like a race with whichever thread last used that number, such as an I/O thread's socket. */
static DIR *open_folder(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return dir;
}

/* ---- file signatures ------------------------------------------------------------------------ */

static uint64_t hash_bytes(uint64_t hash, const void *data, size_t len)
{
    const unsigned char *bytes = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= bytes[i];
        hash *= UINT64_C(1099511628211);
    }
    return hash;
}

static uint64_t hash_start(void)
{
    return UINT64_C(14695981039346656037);
}

/* Signature of a folder's files (names, sizes, modification times and inodes, through
 * SIGNATURE_DEPTH levels of subfolders), independent of the order readdir returns them in. The
 * inode's change time is left out: adding a hard link to a file changes it, and the default
 * repository's files are hard links that other checkouts link again. */
static uint64_t folder_signature(const char *path, int depth)
{
    DIR *dir = open_folder(path);
    if (dir == NULL)
        return 0;
    uint64_t sum = 0;
    struct dirent *item;
    char child[PATH_BYTES];
    while ((item = readdir(dir)) != NULL) {
        if (strcmp(item->d_name, ".") == 0 || strcmp(item->d_name, "..") == 0)
            continue;
        int n = snprintf(child, sizeof(child), "%s/%s", path, item->d_name);
        struct stat info;
        if (n < 0 || (size_t)n >= sizeof(child) || stat(child, &info) != 0)
            continue;
        uint64_t hash = hash_bytes(hash_start(), item->d_name, strlen(item->d_name));
        int64_t facts[] = {(int64_t)info.st_size, (int64_t)info.st_mtim.tv_sec,
                           (int64_t)info.st_mtim.tv_nsec, (int64_t)info.st_ino};
        hash = hash_bytes(hash, facts, sizeof(facts));
        if (S_ISDIR(info.st_mode) && depth > 0)
            hash = hash_bytes(hash, &(uint64_t){folder_signature(child, depth - 1)}, 8);
        sum += hash;
    }
    closedir(dir);
    return sum | 1; /* never 0, which means "none" */
}

/* True when path exists and resolves inside the folder whose resolved path is root. */
static bool resolves_inside(const char *root, const char *path, bool *exists)
{
    char resolved[PATH_MAX];
    *exists = false;
    if (realpath(path, resolved) == NULL)
        return false;
    *exists = true;
    size_t len = strlen(root);
    return strncmp(resolved, root, len) == 0 && (resolved[len] == '/' || resolved[len] == '\0');
}

/* ---- repository lists --------------------------------------------------------------------- */

typedef struct name_found {
    char name[129];
    int repository;
    int second; /* another repository with the same name, or -1 */
} name_found_t;

typedef struct version_found {
    int64_t version;
    uint64_t files;
    bool outside; /* model.onnx or the folder is a link leaving the repository */
} version_found_t;

static int compare_found_names(const void *a, const void *b)
{
    const name_found_t *x = a, *y = b;
    int order = strcmp(x->name, y->name);
    return order != 0 ? order : x->repository - y->repository;
}

static int compare_versions(const void *a, const void *b)
{
    const version_found_t *x = a, *y = b;
    return (x->version < y->version) - (x->version > y->version); /* highest first */
}

static void log_ignored(const oxs_server_t *server, const char *model, const char *path,
                        const char *why)
{
    oxs_log_field_t fields[] = {{.key = "path", .str = path}, {.key = "reason", .str = why}};
    oxs__log(server, OXS_LOG_WARN, model, "repository folder ignored", fields, 2);
}

/* Parses a version folder name: a positive integer without sign or leading zero. */
static int64_t parse_version(const char *text)
{
    if (text[0] < '1' || text[0] > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    return errno == 0 && *end == '\0' && value > 0 ? (int64_t)value : 0;
}

/* Lists every repository's model folders into *out (sorted by name), marking names found in
 * two repositories. Returns the count, or -1 when out of memory. */
static long list_names(oxs__control_t *control, bool verbose, name_found_t **out)
{
    oxs_server_t *server = control->server;
    name_found_t *names = NULL;
    size_t count = 0, capacity = 0;
    char path[PATH_BYTES];

    for (int r = 0; r < control->repository_count; r++) {
        DIR *dir = open_folder(control->paths[r]);
        if (dir == NULL) {
            oxs_log_field_t fields[] = {{.key = "path", .str = control->paths[r]},
                                        {.key = "error", .str = strerror(errno)}};
            oxs__log(server, OXS_LOG_ERROR, NULL, "model repository cannot be read", fields, 2);
            continue;
        }
        struct dirent *item;
        while ((item = readdir(dir)) != NULL) {
            if (item->d_name[0] == '.')
                continue;
            int n = snprintf(path, sizeof(path), "%s/%s", control->paths[r], item->d_name);
            struct stat info;
            if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &info) != 0 ||
                !S_ISDIR(info.st_mode))
                continue;
            char why[300];
            if (oxs_model_name_check(item->d_name, strlen(item->d_name), why, sizeof(why)) !=
                OXS_OK) {
                if (verbose)
                    log_ignored(server, NULL, path, why);
                continue;
            }
            if (count == capacity) {
                size_t bigger = capacity ? capacity * 2 : 32;
                name_found_t *grown = oxs__calloc(&server->allocator, bigger, sizeof(*grown));
                if (grown == NULL) {
                    closedir(dir);
                    oxs__free(&server->allocator, names);
                    return -1;
                }
                if (count > 0)
                    memcpy(grown, names, count * sizeof(*names));
                oxs__free(&server->allocator, names);
                names = grown;
                capacity = bigger;
            }
            snprintf(names[count].name, sizeof(names[count].name), "%s", item->d_name);
            names[count].repository = r;
            names[count].second = -1;
            count++;
        }
        closedir(dir);
    }
    if (count > 1)
        qsort(names, count, sizeof(*names), compare_found_names);
    /* Keep one item per name; a name in two repositories keeps both numbers. */
    size_t unique = 0;
    for (size_t i = 0; i < count; i++) {
        if (unique > 0 && strcmp(names[unique - 1].name, names[i].name) == 0) {
            if (names[unique - 1].second < 0)
                names[unique - 1].second = names[i].repository;
            continue;
        }
        names[unique++] = names[i];
    }
    *out = names;
    return (long)unique;
}

/* Lists the version folders of the model folder dir (in repository r), highest first. */
static long list_versions(oxs__control_t *control, int r, const char *model, const char *dir,
                          bool verbose, version_found_t **out)
{
    oxs_server_t *server = control->server;
    version_found_t *versions = NULL;
    size_t count = 0, capacity = 0;
    char path[PATH_BYTES], file[PATH_BYTES + 16];

    *out = NULL;
    DIR *folder = open_folder(dir);
    if (folder == NULL)
        return 0;
    struct dirent *item;
    while ((item = readdir(folder)) != NULL) {
        if (item->d_name[0] == '.' || strcmp(item->d_name, "config.json") == 0)
            continue;
        int n = snprintf(path, sizeof(path), "%s/%s", dir, item->d_name);
        struct stat info;
        if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &info) != 0 ||
            !S_ISDIR(info.st_mode))
            continue;
        int64_t version = parse_version(item->d_name);
        if (version == 0) {
            if (verbose)
                log_ignored(server, model, path,
                            "not a version: expected a positive integer without sign or "
                            "leading zero");
            continue;
        }
        snprintf(file, sizeof(file), "%s/model.onnx", path);
        bool exists = false;
        bool inside = resolves_inside(control->real[r], path, &exists) &&
                      resolves_inside(control->real[r], file, &exists);
        if (!exists)
            continue; /* no model.onnx (yet) */
        if (count == capacity) {
            size_t bigger = capacity ? capacity * 2 : 8;
            version_found_t *grown = oxs__calloc(&server->allocator, bigger, sizeof(*grown));
            if (grown == NULL) {
                closedir(folder);
                oxs__free(&server->allocator, versions);
                return -1;
            }
            if (count > 0)
                memcpy(grown, versions, count * sizeof(*versions));
            oxs__free(&server->allocator, versions);
            versions = grown;
            capacity = bigger;
        }
        versions[count].version = version;
        versions[count].outside = !inside;
        versions[count].files = folder_signature(path, SIGNATURE_DEPTH);
        count++;
    }
    closedir(folder);
    if (count > 1)
        qsort(versions, count, sizeof(*versions), compare_versions);
    *out = versions;
    return (long)count;
}

/* ---- records -------------------------------------------------------------------------------- */

/* Makes model the record of its version and releases the record it replaces. */
static bool put_record(oxs__entry_t *entry, oxs_model_t *model)
{
    bool failed;
    oxs_model_t *old = oxs__registry_put(model->server->registry, entry, model->version, model,
                                         &failed);
    if (failed) {
        oxs_model_release(model);
        return false;
    }
    oxs_model_release(old);
    return true;
}

static void remove_record(oxs_server_t *server, oxs__entry_t *entry, int64_t version)
{
    bool failed;
    oxs_model_release(oxs__registry_put(server->registry, entry, version, NULL, &failed));
}

static void remove_all_records(oxs_server_t *server, oxs__entry_t *entry)
{
    while (entry->count > 0)
        remove_record(server, entry, entry->records[0]->version);
}

/* Replaces every record of entry with one that reports reason for the model as a whole. */
static void set_model_stub(oxs_server_t *server, oxs__entry_t *entry, oxs_model_state_t state,
                           const char *reason, bool dormant)
{
    remove_all_records(server, entry);
    oxs_model_t *stub = oxs__model_stub(server, entry->name, 0, state, reason, dormant);
    if (stub != NULL)
        put_record(entry, stub);
}

/* Replaces every record with a dormant one whose reason is "unloaded". A record that served
 * becomes UNLOADING until the last request holding it is done. */
static void unload_records(oxs_server_t *server, oxs__entry_t *entry)
{
    for (size_t i = 0; i < entry->count; i++) {
        oxs_model_t *record = entry->records[i];
        if (record->dormant)
            continue;
        bool served = atomic_load(&record->state) == OXS_MODEL_READY;
        oxs_model_t *stub = oxs__model_stub(server, entry->name, record->version,
                                            served ? OXS_MODEL_UNLOADING
                                                   : OXS_MODEL_UNAVAILABLE,
                                            "unloaded", true);
        if (stub == NULL)
            continue;
        stub->unloading = served ? record : NULL;
        put_record(entry, stub);
    }
}

static void remember_scan(oxs_server_t *server, oxs__entry_t *entry, uint64_t config,
                          const version_found_t *versions, size_t count)
{
    oxs__seen_t *seen = count > 0 ? oxs__calloc(&server->allocator, count, sizeof(*seen)) : NULL;
    if (count > 0 && seen == NULL)
        return; /* the next scan then counts everything as new */
    for (size_t i = 0; i < count; i++) {
        seen[i].version = versions[i].version;
        seen[i].files = versions[i].files;
    }
    oxs__free(&server->allocator, entry->seen);
    entry->seen = seen;
    entry->seen_count = count;
    entry->seen_config = config;
    entry->scanned = true;
}

/* True when the previous scan saw version with the same files. */
static bool unchanged_since_last_scan(const oxs__entry_t *entry, const version_found_t *version)
{
    for (size_t i = 0; i < entry->seen_count; i++)
        if (entry->seen[i].version == version->version)
            return entry->seen[i].files == version->files;
    return false;
}

static bool policy_selects(const oxs_model_config_t *config, const version_found_t *versions,
                           size_t index)
{
    switch (config->version_policy) {
    case OXS_VERSION_LATEST:
        return index < (size_t)config->num_versions;
    case OXS_VERSION_ALL:
        return true;
    case OXS_VERSION_SPECIFIC:
        for (int i = 0; i < config->version_count; i++)
            if (config->versions[i] == versions[index].version)
                return true;
        return false;
    }
    return false;
}

/* ---- bringing one model in line with its folder ---------------------------------------------- */

typedef struct sync_mode {
    bool stable_only; /* apply only what did not change since the previous scan (poll) */
    bool verbose;     /* log ignored folders */
} sync_mode_t;

/* Loads version of entry from its folder beside the record serving it, and makes it the
 * record once READY; a failed load leaves a READY record serving. */
static oxs_status_t load_version(oxs__control_t *control, oxs__entry_t *entry,
                                 const version_found_t *version, const char *dir,
                                 const char *config_text, size_t config_len, uint64_t config,
                                 char *error, size_t error_size)
{
    oxs_server_t *server = control->server;
    char path[PATH_BYTES + 32];
    oxs_model_t *current = oxs__entry_record(entry, version->version);
    bool serving = current != NULL && atomic_load(&current->state) == OXS_MODEL_READY;

    oxs_model_t *model = oxs__model_create(server, entry->name, version->version);
    if (model == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    model->files = version->files;
    model->config_text = config;
    snprintf(path, sizeof(path), "%s/%lld/model.onnx", dir, (long long)version->version);
    if (version->outside) {
        model->failed = true;
        oxs__model_fail(model,
                        "model.onnx or its version folder is a link that leaves the model "
                        "repository, which is rejected; copy or hard-link the file into the "
                        "repository instead",
                        path);
        oxs_status_t status = oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                                        "model \"%s\" version %lld: %s", entry->name,
                                        (long long)version->version, model->reason);
        if (serving)
            oxs_model_release(model);
        else
            put_record(entry, model);
        return status;
    }

    /* A new version shows LOADING in the index; a reload stays hidden until READY. */
    if (!serving) {
        oxs_model_acquire(model);
        if (!put_record(entry, model)) {
            oxs_model_release(model);
            return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        }
    }
    oxs_status_t status = oxs__model_load(model, path, config_text, config_len, "config.json",
                                          error, error_size);
    if (status == OXS_OK && serving) {
        oxs_model_acquire(model);
        put_record(entry, model); /* the switch: new requests reach the new files from here */
    } else if (status != OXS_OK && serving) {
        oxs_log_field_t fields[] = {{.key = "version", .num = version->version}};
        oxs__log(server, OXS_LOG_WARN, entry->name,
                 "the loaded files keep serving after the failed reload", fields, 1);
    }
    oxs_model_release(model);
    return status;
}

/* Brings entry's records in line with its folder dir in repository r. Returns the first
 * failure, after trying everything. */
static oxs_status_t sync_model(oxs__control_t *control, oxs__entry_t *entry, int r,
                               const char *dir, sync_mode_t mode, char *error,
                               size_t error_size)
{
    oxs_server_t *server = control->server;
    oxs_status_t result = OXS_OK;
    char config_path[PATH_BYTES + 16];
    char *config_text = NULL;
    size_t config_len = 0;
    uint64_t config = 0;
    version_found_t *versions = NULL;
    char message[600] = "";
    int config_failure = 0; /* errno of reading config.json */
    bool exists = false;

    if (!resolves_inside(control->real[r], dir, &exists)) {
        set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE,
                       "the model folder is a link that leaves the model repository", false);
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "model \"%s\": the model folder is a link that leaves the model "
                         "repository",
                         entry->name);
    }

    snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
    struct stat info;
    if (lstat(config_path, &info) == 0) {
        int failure = resolves_inside(control->real[r], config_path, &exists)
                          ? oxs__read_file(&server->allocator, config_path,
                                           OXS__MAX_CONFIG_BYTES, &config_text, &config_len)
                          : EXDEV;
        config_failure = failure;
        if (failure != 0) {
            snprintf(message, sizeof(message), "config.json %s",
                     failure == EXDEV  ? "is a link that leaves the model repository"
                     : failure == EFBIG ? "is larger than 1 MiB"
                                        : strerror(failure));
            config = 1; /* a signature that no text has, so a fixed file is read again */
        } else {
            config = hash_bytes(hash_start(), config_text, config_len) | 2;
        }
    }

    long count = list_versions(control, r, entry->name, dir, mode.verbose, &versions);
    if (count < 0) {
        oxs__free(&server->allocator, config_text);
        /* A model with no record would drop out of the repository index. */
        if (entry->count == 0)
            set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE,
                           "out of memory while listing the model's versions", false);
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size,
                         "model \"%s\": out of memory while listing its versions", entry->name);
    }

    /* Poll: a config.json that changed since the previous scan may still be being written. */
    if (mode.stable_only && (!entry->scanned || config != entry->seen_config)) {
        bool first = !entry->scanned;
        remember_scan(server, entry, config, versions, (size_t)count);
        if (first)
            set_model_stub(server, entry, OXS_MODEL_LOADING, "", false);
        goto done;
    }

    oxs__config_t parsed;
    memset(&parsed, 0, sizeof(parsed));
    oxs_status_t status = OXS_OK;
    if (message[0] == '\0' && config_text != NULL)
        status = oxs__config_parse(server, config_text, config_len, "config.json", &parsed,
                                   message, sizeof(message));
    else if (message[0] == '\0')
        oxs__config_defaults(server, &parsed.config);
    else
        status = config_failure == ENOMEM ? OXS_ERR_OUT_OF_MEMORY : OXS_ERR_INVALID_ARGUMENT;
    oxs__config_free(server, &parsed);
    if (status != OXS_OK) {
        bool serving = false;
        for (size_t i = 0; i < entry->count; i++)
            serving |= atomic_load(&entry->records[i]->state) == OXS_MODEL_READY;
        oxs__redact_paths(message);
        /* Logged once per change of the file, not at every poll. */
        bool changed = !entry->scanned || config != entry->seen_config || mode.verbose;
        if (serving && changed) {
            oxs_log_field_t fields[] = {{.key = "error", .str = message}};
            oxs__log(server, OXS_LOG_ERROR, entry->name,
                     "config.json is invalid; the loaded versions keep serving", fields, 1);
        } else if (!serving) {
            set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE, message, false);
            oxs__log(server, OXS_LOG_ERROR, entry->name, "model failed to load",
                     (oxs_log_field_t[]){{.key = "error", .str = message}}, 1);
        }
        result = oxs__fail(status, error, error_size, "model \"%s\": %s", entry->name, message);
        remember_scan(server, entry, config, versions, (size_t)count);
        goto done;
    }

    /* Versions the policy selects: load the new and the changed ones. */
    bool selected_ready = false;
    for (long i = 0; i < count; i++) {
        const version_found_t *version = &versions[i];
        if (!policy_selects(&parsed.config, versions, (size_t)i))
            continue;
        oxs_model_t *record = oxs__entry_record(entry, version->version);
        bool current = record != NULL && !record->dormant && record->files == version->files &&
                       record->config_text == config &&
                       (atomic_load(&record->state) == OXS_MODEL_READY || record->failed);
        bool stable = !mode.stable_only || unchanged_since_last_scan(entry, version);
        if (!current && stable) {
            char failure[600];
            status = load_version(control, entry, version, dir, config_text, config_len, config,
                                  failure, sizeof(failure));
            if (status != OXS_OK && result == OXS_OK)
                result = oxs__fail(status, error, error_size, "%s", failure);
        }
        record = oxs__entry_record(entry, version->version);
        selected_ready |= record != NULL && atomic_load(&record->state) == OXS_MODEL_READY;
    }
    /* A specific version without a folder is reported. */
    if (parsed.config.version_policy == OXS_VERSION_SPECIFIC) {
        for (int i = 0; i < parsed.config.version_count; i++) {
            int64_t listed = parsed.config.versions[i];
            bool present = false;
            for (long k = 0; k < count && !present; k++)
                present = versions[k].version == listed;
            if (present || oxs__entry_record(entry, listed) != NULL)
                continue;
            char reason[200];
            snprintf(reason, sizeof(reason),
                     "version_policy names version %lld, which has no folder with a model.onnx",
                     (long long)listed);
            oxs_model_t *stub = oxs__model_stub(server, entry->name, listed,
                                                OXS_MODEL_UNAVAILABLE, reason, false);
            if (stub != NULL)
                put_record(entry, stub);
            oxs_log_field_t fields[] = {{.key = "version", .num = listed},
                                        {.key = "error", .str = reason}};
            oxs__log(server, OXS_LOG_ERROR, entry->name, "model version missing", fields, 2);
        }
    }

    /* Records of versions whose folder was removed, or that the policy no longer selects once a
     * selected version serves (a failed new version leaves the old one serving). */
    for (size_t i = entry->count; i-- > 0;) {
        oxs_model_t *record = entry->records[i];
        int64_t version = record->version;
        long at = -1;
        for (long k = 0; k < count && at < 0; k++)
            if (versions[k].version == version)
                at = k;
        bool named = false;
        if (parsed.config.version_policy == OXS_VERSION_SPECIFIC)
            for (int k = 0; k < parsed.config.version_count; k++)
                named |= parsed.config.versions[k] == version;
        bool removed = at < 0 && !named;
        bool unselected = at >= 0 && !policy_selects(&parsed.config, versions, (size_t)at);
        if (version != 0 && (removed || (unselected && selected_ready))) {
            oxs_log_field_t fields[] = {
                {.key = "version", .num = version},
                {.key = "reason", .str = removed ? "its folder was removed"
                                                 : "version_policy no longer selects it"},
            };
            oxs__log(server, OXS_LOG_INFO, entry->name, "model version removed", fields, 2);
        }
        if (version == 0 || removed || (unselected && selected_ready))
            remove_record(server, entry, version);
    }
    if (entry->count == 0)
        set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE,
                       count == 0 ? "no version folder (a positive integer) with a model.onnx"
                                  : "version_policy selects none of the version folders",
                       false);
    remember_scan(server, entry, config, versions, (size_t)count);

done:
    oxs__free(&server->allocator, versions);
    oxs__free(&server->allocator, config_text);
    return result;
}

/* ---- scans and actions --------------------------------------------------------------------- */

static void model_dir(const oxs__control_t *control, const oxs__entry_t *entry, char *out,
                      size_t size)
{
    snprintf(out, size, "%s/%s", control->paths[entry->repository], entry->name);
}

/* Lists the repositories and updates the entries: new names get an entry, names removed from
 * every repository lose theirs, and names in two repositories are reported. Then brings each
 * model that should load in line with its folder. Outside explicit mode that is every model.
 * In explicit mode it is the models loaded on request, and only when apply_loaded is true.
 * Repository lock held. */
static oxs_status_t scan(oxs__control_t *control, sync_mode_t mode, bool apply_loaded,
                         char *error, size_t error_size)
{
    oxs_server_t *server = control->server;
    bool explicit_mode = server->options.control_mode == OXS_CONTROL_EXPLICIT;
    name_found_t *names = NULL;
    long count = list_names(control, mode.verbose, &names);
    if (count < 0)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");

    size_t entry_count;
    oxs__entry_t *const *entries = oxs__registry_entries(server->registry, &entry_count);
    for (size_t i = 0; i < entry_count; i++)
        entries[i]->found = false;

    oxs_status_t result = OXS_OK;
    for (long i = 0; i < count; i++) {
        const name_found_t *found = &names[i];
        oxs__entry_t *entry = oxs__registry_entry(server->registry, found->name, true);
        if (entry == NULL) {
            result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
            break;
        }
        entry->found = true;
        if (entry->repository == -1 && entry->count > 0) {
            /* Loaded from a file under the same name: the file wins. */
            continue;
        }
        if (found->second >= 0) {
            char reason[300];
            snprintf(reason, sizeof(reason),
                     "the name is in two model repositories (the --model-repository folders "
                     "number %d and %d); rename one of the folders",
                     found->repository + 1, found->second + 1);
            if (entry->repository != -2 || mode.verbose) {
                int both[2] = {found->repository, found->second};
                for (int k = 0; k < 2; k++) {
                    oxs_log_field_t fields[] = {
                        {.key = "repository", .str = control->paths[both[k]]},
                        {.key = "error", .str = reason},
                    };
                    oxs__log(server, OXS_LOG_ERROR, entry->name, "model name is not unique",
                             fields, 2);
                }
            }
            if (entry->repository != -2)
                set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE, reason, false);
            entry->repository = -2;
            entry->scanned = false;
            continue;
        }
        if (entry->repository != found->repository) {
            entry->repository = found->repository;
            entry->scanned = false;
        }
        if (explicit_mode && !entry->requested) {
            if (entry->count == 0)
                set_model_stub(server, entry, OXS_MODEL_UNAVAILABLE, "not loaded", true);
            continue;
        }
        if (explicit_mode && !apply_loaded)
            continue;
        char dir[PATH_BYTES];
        char failure[600];
        model_dir(control, entry, dir, sizeof(dir));
        /* sync_model records a model's failure in its records and logs it, so the scan goes
         * on with the next model. */
        sync_model(control, entry, entry->repository, dir, mode, failure, sizeof(failure));
    }
    oxs__free(&server->allocator, names);

    /* Names removed from every repository. */
    entries = oxs__registry_entries(server->registry, &entry_count);
    for (size_t i = entry_count; i-- > 0;) {
        oxs__entry_t *entry = entries[i];
        if (entry->found || entry->repository == -1)
            continue;
        remove_all_records(server, entry);
        oxs__registry_drop(server->registry, entry);
        entries = oxs__registry_entries(server->registry, &entry_count);
    }
    return result;
}

static oxs_status_t load_model(oxs__control_t *control, const char *name, char *error,
                               size_t error_size)
{
    oxs_server_t *server = control->server;
    sync_mode_t mode = {.stable_only = false, .verbose = false};
    oxs_status_t status = scan(control, mode, false, error, error_size);
    if (status != OXS_OK)
        return status;
    oxs__entry_t *entry = oxs__registry_entry(server->registry, name, false);
    if (entry == NULL || entry->repository == -1)
        return oxs__fail(OXS_ERR_NOT_FOUND, error, error_size,
                         "model \"%s\" is not in any model repository", name);
    if (entry->repository == -2)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size, "model \"%s\": %s", name,
                         entry->count > 0 ? entry->records[0]->reason : "duplicate name");
    bool was_requested = entry->requested;
    entry->requested = true;
    if (!was_requested) {
        /* Records left by an unload make way for fresh loads. */
        for (size_t i = entry->count; i-- > 0;)
            if (entry->records[i]->dormant)
                remove_record(server, entry, entry->records[i]->version);
        entry->scanned = false;
    }
    char dir[PATH_BYTES];
    model_dir(control, entry, dir, sizeof(dir));
    mode.verbose = true;
    status = sync_model(control, entry, entry->repository, dir, mode, error, error_size);
    if (status == OXS_OK) {
        oxs_log_field_t fields[] = {{.key = "versions", .num = (int64_t)entry->count}};
        oxs__log(server, OXS_LOG_INFO, name, "model load request done", fields, 1);
    }
    return status;
}

static oxs_status_t unload_model(oxs__control_t *control, const char *name, char *error,
                                 size_t error_size)
{
    oxs_server_t *server = control->server;
    oxs__entry_t *entry = oxs__registry_entry(server->registry, name, false);
    if (entry == NULL)
        return oxs__fail(OXS_ERR_NOT_FOUND, error, error_size,
                         "model \"%s\" is not in any model repository", name);
    entry->requested = false;
    unload_records(server, entry);
    oxs__log(server, OXS_LOG_INFO, name, "model unloading: new requests are rejected", NULL, 0);
    return OXS_OK;
}

static oxs_status_t run_action(oxs__control_t *control, const action_t *action, char *error,
                               size_t error_size)
{
    oxs_server_t *server = control->server;
    sync_mode_t mode = {.stable_only = false, .verbose = true};
    oxs_status_t status;

    pthread_mutex_lock(&control->repository_lock);
    switch (action->kind) {
    case OXS_REPOSITORY_LOAD:
        status = load_model(control, action->name, error, error_size);
        break;
    case OXS_REPOSITORY_UNLOAD:
        status = unload_model(control, action->name, error, error_size);
        break;
    default:
        oxs__log(server, OXS_LOG_DEBUG, NULL, "rescanning the model repositories", NULL, 0);
        status = scan(control, mode, true, error, error_size);
        break;
    }
    pthread_mutex_unlock(&control->repository_lock);
    return status;
}

/* ---- the repository thread ------------------------------------------------------------------- */

static void free_retired(oxs__control_t *control, oxs_model_t *model)
{
    while (model != NULL) {
        oxs_model_t *next = model->retired_next;
        bool served = atomic_load(&model->state) == OXS_MODEL_READY;
        bool unloaded = oxs__registry_unloaded(control->server->registry, model);
        if (served) {
            oxs_log_field_t fields[] = {{.key = "version", .num = model->version}};
            oxs__log(control->server, OXS_LOG_INFO, model->name,
                     unloaded ? "model unloaded" : "model released after its last request",
                     fields, 1);
        }
        oxs__model_free(model);
        model = next;
    }
}

static void deadline_timespec(int64_t until_us, struct timespec *out)
{
    out->tv_sec = (time_t)(until_us / 1000000);
    out->tv_nsec = (long)(until_us % 1000000) * 1000;
}

static void *control_main(void *arg)
{
    oxs__control_t *control = arg;
    oxs_server_t *server = control->server;

    pthread_mutex_lock(&control->lock);
    for (;;) {
        int64_t now = oxs__now_us();
        bool poll_due = control->polling && now >= control->next_poll_us;
        if (control->retired == NULL && control->head == NULL && !poll_due &&
            !control->stopping) {
            if (control->polling) {
                struct timespec wake;
                deadline_timespec(control->next_poll_us, &wake);
                pthread_cond_timedwait(&control->wake, &control->lock, &wake);
            } else {
                pthread_cond_wait(&control->wake, &control->lock);
            }
            continue;
        }
        oxs_model_t *retired = control->retired;
        control->retired = NULL;
        action_t *action = control->stopping ? NULL : control->head;
        if (action != NULL) {
            control->head = action->next;
            if (control->head == NULL)
                control->tail = NULL;
            control->queued--;
        }
        bool stop = control->stopping && retired == NULL;
        if (poll_due && action == NULL)
            control->next_poll_us = now + (int64_t)server->options.poll_secs * 1000000;
        pthread_mutex_unlock(&control->lock);

        if (stop)
            break;
        free_retired(control, retired);
        if (action != NULL) {
            char error[1024] = "";
            oxs_status_t status = run_action(control, action, error, sizeof(error));
            oxs_repository_done_fn done = action->done;
            void *user = action->user;
            /* Freed first: the caller may count allocations as soon as done returns. */
            oxs__free(&server->allocator, action);
            if (done != NULL)
                done(user, status, status == OXS_OK ? "" : error);
        } else if (poll_due && !control->stopping) {
            sync_mode_t mode = {.stable_only = true, .verbose = false};
            char error[512];
            pthread_mutex_lock(&control->repository_lock);
            scan(control, mode, true, error, sizeof(error));
            pthread_mutex_unlock(&control->repository_lock);
        }
        pthread_mutex_lock(&control->lock);
    }
    return NULL;
}

oxs_status_t oxs__control_start(oxs_server_t *server, char *error, size_t error_size)
{
    oxs__control_t *control = oxs__calloc(&server->allocator, 1, sizeof(*control));
    if (control == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    control->server = server;
    pthread_mutex_init(&control->repository_lock, NULL);
    pthread_mutex_init(&control->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&control->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    server->control = control;

    control->running = true;
    int rc = pthread_create(&control->thread, NULL, control_main, control);
    if (rc != 0) {
        control->running = false;
        return oxs__fail(OXS_ERR_INTERNAL, error, error_size,
                         "starting the repository thread failed: %s", strerror(rc));
    }
    pthread_setname_np(control->thread, "oxs-repository");
    return OXS_OK;
}

void oxs__control_stop(oxs_server_t *server)
{
    oxs__control_t *control = server->control;
    if (control == NULL)
        return;
    pthread_mutex_lock(&control->lock);
    bool running = control->running;
    control->stopping = true;
    pthread_cond_broadcast(&control->wake);
    pthread_mutex_unlock(&control->lock);
    if (running)
        pthread_join(control->thread, NULL);

    pthread_mutex_lock(&control->lock);
    control->running = false;
    action_t *action = control->head;
    oxs_model_t *retired = control->retired;
    control->head = control->tail = NULL;
    control->retired = NULL;
    pthread_mutex_unlock(&control->lock);
    while (action != NULL) {
        action_t *next = action->next;
        if (action->done != NULL)
            action->done(action->user, OXS_ERR_SHUTTING_DOWN, "the server is shutting down");
        oxs__free(&server->allocator, action);
        action = next;
    }
    free_retired(control, retired);
}

void oxs__control_destroy(oxs_server_t *server)
{
    oxs__control_t *control = server->control;
    if (control == NULL)
        return;
    for (int r = 0; r < control->repository_count; r++) {
        oxs__free(&server->allocator, control->paths[r]);
        free(control->real[r]); /* from realpath */
    }
    pthread_cond_destroy(&control->wake);
    pthread_mutex_destroy(&control->lock);
    pthread_mutex_destroy(&control->repository_lock);
    oxs__free(&server->allocator, control);
    server->control = NULL;
}

void oxs__control_retire(oxs_model_t *model)
{
    oxs__control_t *control = model->server->control;
    bool handed = false;
    if (control != NULL) {
        pthread_mutex_lock(&control->lock);
        if (control->running) {
            model->retired_next = control->retired;
            control->retired = model;
            pthread_cond_signal(&control->wake);
            handed = true;
        }
        pthread_mutex_unlock(&control->lock);
    }
    if (!handed)
        oxs__model_free(model);
}

/* ---- public API ------------------------------------------------------------------------------ */

oxs_status_t oxs_repository_check(const oxs_server_t *server, oxs_repository_action_t action,
                                  const char *name, char *error, size_t error_size)
{
    if (action == OXS_REPOSITORY_RESCAN)
        return OXS_OK;
    if (action != OXS_REPOSITORY_LOAD && action != OXS_REPOSITORY_UNLOAD)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "invalid repository action %d", (int)action);
    if (server->options.control_mode != OXS_CONTROL_EXPLICIT)
        return oxs__fail(OXS_ERR_FORBIDDEN, error, error_size,
                         "loading and unloading models needs --model-control-mode=explicit; "
                         "this server runs in mode %s",
                         oxs_control_mode_name(server->options.control_mode));
    return oxs_model_name_check(name != NULL ? name : "", name != NULL ? strlen(name) : 0, error,
                                error_size);
}

oxs_status_t oxs_server_add_repository(oxs_server_t *server, const char *path, char *error,
                                       size_t error_size)
{
    oxs__control_t *control = server->control;
    if (path == NULL || path[0] == '\0')
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "model repository: expected a folder path");
    DIR *dir = open_folder(path);
    if (dir == NULL)
        return oxs__fail(OXS_ERR_NOT_FOUND, error, error_size,
                         "model repository \"%s\" cannot be read: %s", path, strerror(errno));
    closedir(dir);

    oxs_status_t result = OXS_OK;
    pthread_mutex_lock(&control->repository_lock);
    if (control->repository_count == MAX_REPOSITORIES) {
        result = oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                           "model repository \"%s\": at most %d repositories", path,
                           MAX_REPOSITORIES);
    } else {
        int r = control->repository_count;
        control->paths[r] = oxs__strdup(&server->allocator, path);
        control->real[r] = realpath(path, NULL);
        if (control->paths[r] == NULL || control->real[r] == NULL) {
            oxs__free(&server->allocator, control->paths[r]);
            free(control->real[r]);
            control->paths[r] = control->real[r] = NULL;
            result = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        } else {
            control->repository_count++;
        }
    }
    pthread_mutex_unlock(&control->repository_lock);
    return result;
}

oxs_status_t oxs_server_load_repositories(oxs_server_t *server, char *error, size_t error_size)
{
    oxs__control_t *control = server->control;
    sync_mode_t mode = {.stable_only = false, .verbose = true};
    for (int r = 0; r < control->repository_count; r++) {
        DIR *dir = open_folder(control->paths[r]);
        if (dir == NULL)
            return oxs__fail(OXS_ERR_NOT_FOUND, error, error_size,
                             "model repository \"%s\" cannot be read: %s", control->paths[r],
                             strerror(errno));
        closedir(dir);
    }
    pthread_mutex_lock(&control->repository_lock);
    oxs_status_t status = scan(control, mode, true, error, error_size);
    pthread_mutex_unlock(&control->repository_lock);

    if (server->options.control_mode == OXS_CONTROL_POLL) {
        pthread_mutex_lock(&control->lock);
        control->polling = true;
        control->next_poll_us = oxs__now_us() + (int64_t)server->options.poll_secs * 1000000;
        pthread_cond_signal(&control->wake);
        pthread_mutex_unlock(&control->lock);
    }
    return status;
}

oxs_status_t oxs_server_load_repository(oxs_server_t *server, const char *path, char *error,
                                        size_t error_size)
{
    oxs_status_t status = oxs_server_add_repository(server, path, error, error_size);
    if (status == OXS_OK)
        status = oxs_server_load_repositories(server, error, error_size);
    return status;
}

oxs_status_t oxs_repository_submit(oxs_server_t *server, oxs_repository_action_t action,
                                   const char *name, oxs_repository_done_fn done, void *user,
                                   char *error, size_t error_size)
{
    oxs__control_t *control = server->control;
    oxs_status_t status = oxs_repository_check(server, action, name, error, error_size);
    if (status != OXS_OK)
        return status;

    action_t *item = oxs__calloc(&server->allocator, 1, sizeof(*item));
    if (item == NULL)
        return oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    item->kind = action;
    if (action != OXS_REPOSITORY_RESCAN)
        snprintf(item->name, sizeof(item->name), "%s", name);
    item->done = done;
    item->user = user;

    oxs_status_t result = OXS_OK;
    pthread_mutex_lock(&control->lock);
    if (control->stopping || !control->running) {
        result = oxs__fail(OXS_ERR_SHUTTING_DOWN, error, error_size,
                           "the server is shutting down");
    } else if (control->queued >= MAX_QUEUED_ACTIONS) {
        result = oxs__fail(OXS_ERR_QUEUE_FULL, error, error_size,
                           "%d repository actions are already waiting; retry later",
                           control->queued);
    } else {
        if (control->tail != NULL)
            control->tail->next = item;
        else
            control->head = item;
        control->tail = item;
        control->queued++;
        pthread_cond_signal(&control->wake);
        item = NULL;
    }
    pthread_mutex_unlock(&control->lock);
    oxs__free(&server->allocator, item);
    return result;
}

typedef struct control_wait {
    pthread_mutex_t lock;
    pthread_cond_t done;
    bool finished;
    oxs_status_t status;
    char *error;
    size_t error_size;
} control_wait_t;

static void control_done(void *user, oxs_status_t status, const char *message)
{
    control_wait_t *wait = user;
    pthread_mutex_lock(&wait->lock);
    wait->status = status;
    if (wait->error != NULL && wait->error_size > 0)
        snprintf(wait->error, wait->error_size, "%s", message);
    wait->finished = true;
    pthread_cond_signal(&wait->done);
    pthread_mutex_unlock(&wait->lock);
}

oxs_status_t oxs_repository_control(oxs_server_t *server, oxs_repository_action_t action,
                                    const char *name, char *error, size_t error_size)
{
    control_wait_t wait = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, OXS_OK,
                           error, error_size};
    oxs_status_t status = oxs_repository_submit(server, action, name, control_done, &wait,
                                                error, error_size);
    if (status != OXS_OK)
        return status;
    pthread_mutex_lock(&wait.lock);
    while (!wait.finished)
        pthread_cond_wait(&wait.done, &wait.lock);
    pthread_mutex_unlock(&wait.lock);
    return wait.status;
}

/* ---- a model given as one file ------------------------------------------------------------- */

oxs_status_t oxs_server_load_model(oxs_server_t *server, const char *name, int64_t version,
                                   const char *path, char *error, size_t error_size)
{
    return oxs_server_load_model_config(server, name, version, path, NULL, error, error_size);
}

oxs_status_t oxs_server_load_model_config(oxs_server_t *server, const char *name,
                                          int64_t version, const char *path,
                                          const char *config_path, char *error,
                                          size_t error_size)
{
    if (server == NULL || name == NULL || path == NULL)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "server, name and path are required");
    oxs_status_t status = oxs_model_name_check(name, strlen(name), error, error_size);
    if (status != OXS_OK)
        return status;
    if (version <= 0)
        return oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                         "model \"%s\": invalid version %lld, expected a positive integer", name,
                         (long long)version);

    oxs__control_t *control = server->control;
    pthread_mutex_lock(&control->repository_lock);
    oxs__entry_t *entry = oxs__registry_entry(server->registry, name, true);
    oxs_model_t *model = NULL;
    if (entry == NULL) {
        status = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    } else if (oxs__entry_record(entry, version) != NULL) {
        status = oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size,
                           "model \"%s\" version %lld is already loaded", name,
                           (long long)version);
    } else if ((model = oxs__model_create(server, name, version)) == NULL) {
        status = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
    } else {
        entry->repository = -1;
        oxs_model_acquire(model);
        if (!put_record(entry, model)) {
            oxs_model_release(model);
            model = NULL;
            status = oxs__fail(OXS_ERR_OUT_OF_MEMORY, error, error_size, "out of memory");
        }
    }
    if (model != NULL) {
        char *text = NULL;
        size_t len = 0;
        int failure = config_path != NULL
                          ? oxs__read_file(&server->allocator, config_path,
                                           OXS__MAX_CONFIG_BYTES, &text, &len)
                          : 0;
        const char *file = config_path != NULL ? strrchr(config_path, '/') : NULL;
        file = file != NULL ? file + 1 : config_path;
        if (failure != 0) {
            char reason[400];
            snprintf(reason, sizeof(reason), "%s: cannot be read: %s", file,
                     failure == EFBIG ? "larger than 1 MiB" : strerror(failure));
            model->failed = true;
            oxs__model_fail(model, reason, config_path);
            status = oxs__fail(OXS_ERR_INVALID_ARGUMENT, error, error_size, "%s",
                               model->reason);
        } else {
            status = oxs__model_load(model, path, text, len, file, error, error_size);
        }
        oxs__free(&server->allocator, text);
        oxs_model_release(model);
    }
    if (entry != NULL && entry->count == 0)
        oxs__registry_drop(server->registry, entry);
    pthread_mutex_unlock(&control->repository_lock);
    return status;
}
