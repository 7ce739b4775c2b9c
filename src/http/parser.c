/*
 * oxs__http_parser_* over http-parser 2.9.
 */
#include "http/parser.h"

static oxs__http_parser_t *parser_of(http_parser *impl)
{
    return impl->data;
}

static int forward_message_begin(http_parser *impl)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_message_begin(parser->user);
}

static int forward_url(http_parser *impl, const char *at, size_t len)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_url(parser->user, at, len);
}

static int forward_header_field(http_parser *impl, const char *at, size_t len)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_header_field(parser->user, at, len);
}

static int forward_header_value(http_parser *impl, const char *at, size_t len)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_header_value(parser->user, at, len);
}

static int forward_headers_complete(http_parser *impl)
{
    oxs__http_parser_t *parser = parser_of(impl);
    /* http-parser reads a nonzero return here as "skip the body"; errors use pause instead. */
    return parser->callbacks->on_headers_complete(parser->user) == 0 ? 0 : -1;
}

static int forward_chunk_header(http_parser *impl)
{
    oxs__http_parser_t *parser = parser_of(impl);
    /* http-parser keeps the size of the chunk that starts in content_length. */
    return parser->callbacks->on_chunk_header(parser->user, impl->content_length);
}

static int forward_body(http_parser *impl, const char *at, size_t len)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_body(parser->user, at, len);
}

static int forward_message_complete(http_parser *impl)
{
    oxs__http_parser_t *parser = parser_of(impl);
    return parser->callbacks->on_message_complete(parser->user);
}

static const http_parser_settings forward_settings = {
    .on_message_begin = forward_message_begin,
    .on_url = forward_url,
    .on_header_field = forward_header_field,
    .on_header_value = forward_header_value,
    .on_headers_complete = forward_headers_complete,
    .on_chunk_header = forward_chunk_header,
    .on_body = forward_body,
    .on_message_complete = forward_message_complete,
};

void oxs__http_parser_init(oxs__http_parser_t *parser,
                           const oxs__http_parser_callbacks_t *callbacks, void *user)
{
    http_parser_init(&parser->impl, HTTP_REQUEST);
    parser->impl.data = parser;
    parser->callbacks = callbacks;
    parser->user = user;
}

size_t oxs__http_parser_execute(oxs__http_parser_t *parser, const char *data, size_t len,
                                oxs__http_parse_result_t *result)
{
    size_t consumed = http_parser_execute(&parser->impl, &forward_settings, data, len);
    enum http_errno error = HTTP_PARSER_ERRNO(&parser->impl);

    switch (error) {
    case HPE_OK:
        *result = OXS__HTTP_PARSE_OK;
        break;
    case HPE_PAUSED:
        *result = OXS__HTTP_PARSE_PAUSED;
        break;
    case HPE_HEADER_OVERFLOW:
        *result = OXS__HTTP_PARSE_HEADER_TOO_LARGE;
        break;
    default:
        *result = OXS__HTTP_PARSE_INVALID;
        break;
    }
    return consumed;
}

void oxs__http_parser_set_max_header_bytes(size_t bytes)
{
    http_parser_set_max_header_size(bytes > UINT32_MAX ? UINT32_MAX : (uint32_t)bytes);
}

void oxs__http_parser_pause(oxs__http_parser_t *parser)
{
    enum http_errno error = HTTP_PARSER_ERRNO(&parser->impl);

    /* http-parser asserts when a parser that failed is paused; it stops on its own. */
    if (error == HPE_OK || error == HPE_PAUSED)
        http_parser_pause(&parser->impl, 1);
}

void oxs__http_parser_resume(oxs__http_parser_t *parser)
{
    http_parser_pause(&parser->impl, 0);
}

const char *oxs__http_parser_error(const oxs__http_parser_t *parser)
{
    enum http_errno error = HTTP_PARSER_ERRNO(&parser->impl);
    /* http-parser reports a chunk size that is not hexadecimal or overflows 64 bits with the
     * same code as a bad Content-Length. */
    if (error == HPE_INVALID_CONTENT_LENGTH && (parser->impl.flags & F_CHUNKED) != 0)
        return "invalid chunk size; expected a hexadecimal byte count";
    return http_errno_description(error);
}

oxs__http_method_t oxs__http_parser_method(const oxs__http_parser_t *parser)
{
    switch (parser->impl.method) {
    case HTTP_GET:
        return OXS__HTTP_GET;
    case HTTP_HEAD:
        return OXS__HTTP_HEAD;
    case HTTP_POST:
        return OXS__HTTP_POST;
    default:
        return OXS__HTTP_OTHER;
    }
}

const char *oxs__http_parser_method_name(const oxs__http_parser_t *parser)
{
    return http_method_str((enum http_method)parser->impl.method);
}

void oxs__http_parser_version(const oxs__http_parser_t *parser, int *major, int *minor)
{
    *major = parser->impl.http_major;
    *minor = parser->impl.http_minor;
}

bool oxs__http_parser_keep_alive(const oxs__http_parser_t *parser)
{
    return http_should_keep_alive(&parser->impl) != 0;
}

bool oxs__http_parser_content_length(const oxs__http_parser_t *parser, uint64_t *len)
{
    if ((parser->impl.flags & F_CONTENTLENGTH) == 0)
        return false;
    *len = parser->impl.content_length;
    return true;
}

bool oxs__http_parser_chunked(const oxs__http_parser_t *parser)
{
    return (parser->impl.flags & F_CHUNKED) != 0;
}

bool oxs__http_parser_upgrade(const oxs__http_parser_t *parser)
{
    return parser->impl.upgrade != 0;
}
