/*
 * The HTTP/1.x request parser behind a small interface, so the session layer does not depend on
 * one parser library. This implementation wraps http-parser 2.9 (Debian's libhttp-parser-dev);
 * an llhttp version would implement the same functions.
 *
 * Callbacks return 0 to continue. To stop at the current byte (at the end of a request, say), a
 * callback calls oxs__http_parser_pause. Execute then returns how many bytes it consumed, and
 * after oxs__http_parser_resume parsing continues from the next byte.
 */
#ifndef OXS_HTTP_PARSER_H
#define OXS_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

typedef struct oxs__http_parser_callbacks {
    int (*on_message_begin)(void *user);
    int (*on_url)(void *user, const char *at, size_t len);
    int (*on_header_field)(void *user, const char *at, size_t len);
    int (*on_header_value)(void *user, const char *at, size_t len);
    int (*on_headers_complete)(void *user);
    int (*on_chunk_header)(void *user, uint64_t size); /* before each chunk's data */
    int (*on_body)(void *user, const char *at, size_t len);
    int (*on_message_complete)(void *user);
} oxs__http_parser_callbacks_t;

typedef enum oxs__http_parse_result {
    OXS__HTTP_PARSE_OK = 0,          /* every byte consumed */
    OXS__HTTP_PARSE_PAUSED,          /* a callback paused the parser */
    OXS__HTTP_PARSE_HEADER_TOO_LARGE, /* the request line and headers exceed the parser's limit */
    OXS__HTTP_PARSE_INVALID,         /* malformed HTTP; see oxs__http_parser_error */
} oxs__http_parse_result_t;

typedef enum oxs__http_method {
    OXS__HTTP_OTHER = 0,
    OXS__HTTP_GET,
    OXS__HTTP_HEAD,
    OXS__HTTP_POST,
} oxs__http_method_t;

typedef struct oxs__http_parser {
    http_parser impl;
    const oxs__http_parser_callbacks_t *callbacks;
    void *user;
} oxs__http_parser_t;

void oxs__http_parser_init(oxs__http_parser_t *parser,
                           const oxs__http_parser_callbacks_t *callbacks, void *user);

/* Parses len bytes and returns how many were consumed (all of them unless the result is not OK). */
size_t oxs__http_parser_execute(oxs__http_parser_t *parser, const char *data, size_t len,
                                oxs__http_parse_result_t *result);

/* Sets the largest request line and headers that any parser accepts. http-parser keeps this
 * limit in a global: call it before threads parse. */
void oxs__http_parser_set_max_header_bytes(size_t bytes);

void oxs__http_parser_pause(oxs__http_parser_t *parser);
void oxs__http_parser_resume(oxs__http_parser_t *parser);

/* Returns a description of the last parse error, such as "invalid HTTP method". */
const char *oxs__http_parser_error(const oxs__http_parser_t *parser);

/* The accessors below describe the current request; they are valid from on_headers_complete on. */
oxs__http_method_t oxs__http_parser_method(const oxs__http_parser_t *parser);
const char *oxs__http_parser_method_name(const oxs__http_parser_t *parser);
void oxs__http_parser_version(const oxs__http_parser_t *parser, int *major, int *minor);
/* True when the connection may stay open after this request (HTTP/1.1 without
 * "Connection: close", or HTTP/1.0 with "Connection: keep-alive"). */
bool oxs__http_parser_keep_alive(const oxs__http_parser_t *parser);
/* True when the request has a Content-Length header, whose value goes to *len. */
bool oxs__http_parser_content_length(const oxs__http_parser_t *parser, uint64_t *len);
bool oxs__http_parser_chunked(const oxs__http_parser_t *parser);
/* True when the request asked to switch protocols; bytes after it are not HTTP/1.x. */
bool oxs__http_parser_upgrade(const oxs__http_parser_t *parser);

#endif /* OXS_HTTP_PARSER_H */
