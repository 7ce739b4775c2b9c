/*
 * The HTTP routes: maps a method and a request target to an endpoint with its model name and
 * version, URL-decoded and checked.
 */
#ifndef OXS_HTTP_ROUTES_H
#define OXS_HTTP_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "http/parser.h"

typedef enum oxs__http_endpoint {
    OXS__EP_PREDICT_DEFAULT, /* POST /predict */
    OXS__EP_PREDICT_MODEL,   /* POST /models/{name}/predict */
    OXS__EP_SERVER_METADATA, /* GET /v2 */
    OXS__EP_HEALTH_LIVE,     /* GET /v2/health/live */
    OXS__EP_HEALTH_READY,    /* GET /v2/health/ready */
    OXS__EP_MODEL_METADATA,  /* GET /v2/models/{name}[/versions/{v}] */
    OXS__EP_MODEL_READY,     /* GET /v2/models/{name}[/versions/{v}]/ready */
    OXS__EP_MODEL_INFER,     /* POST /v2/models/{name}[/versions/{v}]/infer */
    OXS__EP_MODEL_CONFIG,    /* GET /v2/models/{name}[/versions/{v}]/config */
    OXS__EP_HEALTHZ,         /* GET /healthz */
    OXS__EP_REPOSITORY_INDEX,  /* POST /v2/repository/index */
    OXS__EP_REPOSITORY_LOAD,   /* POST /v2/repository/models/{name}/load */
    OXS__EP_REPOSITORY_UNLOAD, /* POST /v2/repository/models/{name}/unload */
    OXS__EP_METRICS,           /* GET /metrics */
    OXS__EP_STATS,             /* GET /v2/models[/{name}[/versions/{v}]]/stats */
    OXS__EP_LOGGING,           /* GET /v2/logging */
    OXS__EP_LOGGING_UPDATE,    /* POST /v2/logging */
} oxs__http_endpoint_t;

typedef struct oxs__http_route {
    oxs__http_endpoint_t endpoint;
    const char *model; /* URL-decoded and NUL-terminated, or NULL when the path has no model */
    int64_t version;   /* 0 when the path has no version */
} oxs__http_route_t;

/* Extracts the path from a request target: origin form ("/v2?x=1" gives "/v2") or absolute form
 * ("http://host/v2"). Returns false when the target has neither form. */
bool oxs__http_target_path(const char *target, size_t len, const char **path, size_t *path_len);

/* Matches a method and a path to a route. The model name is decoded into scratch, which must not
 * change until the route is used. Returns 0 on a match. Otherwise it writes a message into error
 * and returns the HTTP status. That is 400 for an invalid segment or version and 404 for an
 * unknown path. A known path with another method gets 405, and *allow is then the value of the
 * Allow header. */
int oxs__http_route_match(oxs__http_method_t method, const char *method_name, const char *path,
                          size_t path_len, oxs_buf_t *scratch, oxs__http_route_t *route,
                          const char **allow, char *error, size_t error_size);

#endif /* OXS_HTTP_ROUTES_H */
