
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_json.h"
#include "ngx_acs_http.h"


#define NGX_ACS_RETRY_AFTER  "10"


static ngx_str_t  ngx_acs_results[] = {
    [NGX_ACS_RESULT_NONE] = ngx_null_string,
    [NGX_ACS_RESULT_VALIDATED] = ngx_string("validated"),
    [NGX_ACS_RESULT_DELETED] = ngx_string("deleted"),
    [NGX_ACS_RESULT_OPTIONS] = ngx_string("options"),
    [NGX_ACS_RESULT_DISPATCHED] = ngx_string("dispatched"),
    [NGX_ACS_RESULT_ACCEPTED] = ngx_string("accepted"),
    [NGX_ACS_RESULT_CHECKED] = ngx_string("checked"),
    [NGX_ACS_RESULT_STALE] = ngx_string("stale"),
    [NGX_ACS_RESULT_UNAVAILABLE_DISPATCH] = ngx_string("unavailable:dispatch"),
    [NGX_ACS_RESULT_UNAVAILABLE_QUEUE_FULL] =
        ngx_string("unavailable:queue_full"),
    [NGX_ACS_RESULT_UNAVAILABLE_SHUTDOWN] = ngx_string("unavailable:shutdown"),
    [NGX_ACS_RESULT_UNAVAILABLE_REGISTRY] = ngx_string("unavailable:registry"),
    [NGX_ACS_RESULT_UNAVAILABLE_JWKS] = ngx_string("unavailable:jwks"),
    [NGX_ACS_RESULT_UNAVAILABLE_HUB] = ngx_string("unavailable:hub"),
    [NGX_ACS_RESULT_UNAVAILABLE_BACKLOG] = ngx_string("unavailable:backlog"),
    [NGX_ACS_RESULT_REJECTED_METHOD] = ngx_string("rejected:method"),
    [NGX_ACS_RESULT_REJECTED_SECRET] = ngx_string("rejected:secret"),
    [NGX_ACS_RESULT_REJECTED_TOKEN] = ngx_string("rejected:token"),
    [NGX_ACS_RESULT_REJECTED_SUBSCRIPTION] =
        ngx_string("rejected:subscription"),
    [NGX_ACS_RESULT_REJECTED_CONTENT_TYPE] =
        ngx_string("rejected:content_type"),
    [NGX_ACS_RESULT_REJECTED_AEG_EVENT_TYPE] =
        ngx_string("rejected:aeg_event_type"),
    [NGX_ACS_RESULT_REJECTED_JSON] = ngx_string("rejected:json"),
    [NGX_ACS_RESULT_REJECTED_TOO_LARGE] = ngx_string("rejected:too_large"),
    [NGX_ACS_RESULT_REJECTED_SCHEMA] = ngx_string("rejected:schema"),
    [NGX_ACS_RESULT_REJECTED_TOPIC] = ngx_string("rejected:topic"),
    [NGX_ACS_RESULT_REJECTED_ORIGIN] = ngx_string("rejected:origin"),
    [NGX_ACS_RESULT_OTHER] = ngx_string("other")
};

/* a name for every result, or this does not compile */
typedef char  ngx_acs_results_named[
    (sizeof(ngx_acs_results) / sizeof(ngx_str_t) == NGX_ACS_RESULTS)
    ? 1 : -1];


ngx_http_acs_notify_ctx_t *
ngx_acs_ctx(ngx_http_request_t *r)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_acs_notify_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ngx_http_set_ctx(r, ctx, ngx_http_acs_notify_module);
    }

    return ctx;
}


ngx_str_t *
ngx_acs_result_name(ngx_acs_result_e result)
{
    if (result == NGX_ACS_RESULT_NONE || result >= NGX_ACS_RESULTS) {
        return NULL;
    }

    return &ngx_acs_results[result];
}


const char *
ngx_acs_result_code(ngx_acs_result_e result)
{
    u_char     *colon;
    ngx_str_t  *name;

    name = ngx_acs_result_name(result);
    if (name == NULL) {
        return "";
    }

    /* the names are C strings: static literals */

    colon = ngx_strlchr(name->data, name->data + name->len, ':');

    return (const char *) (colon ? colon + 1 : name->data);
}


void
ngx_acs_set_result(ngx_http_request_t *r, ngx_acs_result_e result)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_acs_ctx(r);

    if (ctx != NULL) {
        ctx->result = result;
    }
}


ngx_table_elt_t *
ngx_acs_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


ngx_int_t
ngx_acs_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;
#if (nginx_version >= 1023000)
    h->next = NULL;         /* headers of one name are chained since 1.23 */
#endif

    return NGX_OK;
}


ngx_int_t
ngx_acs_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = body ? (off_t) body->len : 0;

    if (body && r->headers_out.content_type.len == 0) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
    }

    if (body == NULL || r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body->data;
    b->last = body->data + body->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


ngx_int_t
ngx_acs_refuse(ngx_http_request_t *r, ngx_uint_t status, const char *code,
    u_char *reason, size_t len)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_acs_ctx(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->message.data = ngx_pnalloc(r->pool, len);
    if (ctx->message.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(ctx->message.data, reason, len);
    ctx->message.len = len;

    ctx->refused = 1;
    ctx->status = status;
    ctx->code = code;

    return status;
}


ngx_int_t
ngx_acs_retry_after(ngx_http_request_t *r, time_t seconds)
{
    u_char     *p;
    ngx_str_t   value;

    if (seconds == 0) {
        ngx_str_set(&value, NGX_ACS_RETRY_AFTER);
        return ngx_acs_add_header(r, "Retry-After", &value);
    }

    /* the header keeps the value: in the request's pool */

    p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%T", seconds) - p;

    return ngx_acs_add_header(r, "Retry-After", &value);
}


ngx_int_t
ngx_acs_refusal(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_str_t                   body, code;
    ngx_acs_gen_t               gen;
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    /* what the handler returns is the refusal's status, not a later rc */

    if (ctx == NULL || !ctx->refused || rc != (ngx_int_t) ctx->status) {
        return rc;
    }

    /* a refusal before the body was read: drop it, the connection lives */

    if (r->request_body == NULL) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (ctx->status == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_acs_retry_after(r, ctx->retry_after) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    code.data = (u_char *) ctx->code;
    code.len = ngx_strlen(ctx->code);

    if (ngx_acs_gen_init(&gen, r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_key(&gen, "error");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_pair(&gen, "code", &code);
    ngx_acs_gen_pair(&gen, "message", &ctx->message);
    ngx_acs_gen_map_close(&gen);
    ngx_acs_gen_map_close(&gen);

    if (ngx_acs_gen_done(&gen, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_acs_send(r, ctx->status, &body);
}
