/*
 * The registry's records as the repository code (repository.c) and the registry (registry.c)
 * share them. Not installed.
 *
 * Locking: the registry lock guards the entry list and each entry's records, which the request
 * path reads. Only a holder of the repository lock (one repository action at a time) changes
 * them, so that holder may read both without the registry lock.
 */
#ifndef OXS_REPOSITORY_REPOSITORY_H
#define OXS_REPOSITORY_REPOSITORY_H

#include "core/internal.h"

/* A version folder as one scan saw it. */
typedef struct oxs__seen {
    int64_t version;
    uint64_t files; /* signature of the folder's files */
} oxs__seen_t;

/* One model name and its versions. */
typedef struct oxs__entry {
    char *name;
    int repository;       /* index of its repository, -1 for a model loaded from a file */
    bool requested;       /* explicit mode: a load was requested and no unload since */
    bool found;           /* seen by the scan in progress */
    bool scanned;         /* seen_config and seen hold the previous scan */
    uint64_t seen_config; /* config.json signature at the previous scan, 0 without one */
    oxs__seen_t *seen;
    size_t seen_count;
    oxs_model_t **records; /* by version; each holds the registry's reference */
    size_t count;
    size_t capacity;
} oxs__entry_t;

/* Finds the entry of name, or creates an empty one when create is true. NULL when absent or
 * out of memory. */
oxs__entry_t *oxs__registry_entry(oxs__registry_t *registry, const char *name, bool create);

/* The entries in name order; valid until the holder of the repository lock changes them. */
oxs__entry_t *const *oxs__registry_entries(oxs__registry_t *registry, size_t *count);

/* Makes model (its reference passes to the registry; NULL removes) the record of version and
 * returns the record it replaces, whose reference passes to the caller, or NULL. Fails only
 * when out of memory, with *failed set and nothing changed. */
oxs_model_t *oxs__registry_put(oxs__registry_t *registry, oxs__entry_t *entry, int64_t version,
                               oxs_model_t *model, bool *failed);

/* Returns the record of version, or NULL. Holder of the repository lock. */
oxs_model_t *oxs__entry_record(const oxs__entry_t *entry, int64_t version);

/* Removes an entry that has no record left and frees it. */
void oxs__registry_drop(oxs__registry_t *registry, oxs__entry_t *entry);

/* Marks the UNLOADING record that waits for freed UNAVAILABLE ("unloaded"). Returns false
 * when no record waits for it (a model replaced by a reload, say). */
bool oxs__registry_unloaded(oxs__registry_t *registry, const oxs_model_t *freed);

/* Creates an unregistered model object in state LOADING with one reference. */
oxs_model_t *oxs__model_create(oxs_server_t *server, const char *name, int64_t version);

/* Creates a record that serves nothing: state and reason given, marked dormant or not. */
oxs_model_t *oxs__model_stub(oxs_server_t *server, const char *name, int64_t version,
                             oxs_model_state_t state, const char *reason, bool dormant);

/* Loads model from the ONNX file at path with the config.json text (NULL: none), which
 * config_file names in messages. Builds its scheduler, warms it up and makes it READY. On
 * failure the model is UNAVAILABLE with the error (paths removed) as reason, marked failed,
 * and the failure is logged. */
oxs_status_t oxs__model_load(oxs_model_t *model, const char *path, const char *config_text,
                             size_t config_len, const char *config_file, char *error,
                             size_t error_size);

/* Makes a record UNAVAILABLE with reason (path, when given, removed from it) and logs it. */
void oxs__model_fail(oxs_model_t *model, const char *reason, const char *path);

#endif /* OXS_REPOSITORY_REPOSITORY_H */
