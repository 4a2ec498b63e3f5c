
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The order of checks is the order of cost: method, secret, subscription
 * name, a bearer token that is present, content type, event type header;
 * only then is the body read and parsed, and the topics of its events
 * checked.  A missing token is refused once the request's kind is known
 * (a tokenless validation may pass on its topic).
 *
 * The CloudEvents handshake (OPTIONS) is checked for its origin and for a
 * secret in the URL's query string only: Event Grid sends it with no
 * aeg-* header, no body, no token and no custom delivery header, but to
 * the URL it was given.  It grants nothing: every delivery that follows
 * passes every check.
 *
 * Every refusal is answered with the status Event Grid acts on (400, 401,
 * 403 and 413 are never retried, 503 is) and logged once, at
 * acs_notify_log_level.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_http.h"
#include "ngx_acs_notify.h"
#include "ngx_acs_json.h"
#include "ngx_acs_event.h"
#include "ngx_acs_webhook.h"
#include "ngx_acs_dispatch.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_READ_CHUNK           65536


/* what only the webhook keeps of a request (ngx_http_acs_notify_ctx_t.data) */

typedef enum {
    NGX_ACS_AEG_NOTIFICATION = 0,
    NGX_ACS_AEG_VALIDATION,
    NGX_ACS_AEG_DELETION
} ngx_acs_aeg_type_e;


typedef struct {
    ngx_uint_t                  aeg_type;   /* ngx_acs_aeg_type_e */
    ngx_uint_t                  tokenless;  /* unsigned:1 */
} ngx_acs_webhook_ctx_t;


static ngx_int_t ngx_acs_webhook_request(ngx_http_request_t *r);
static ngx_int_t ngx_acs_webhook_options(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf);
static ngx_int_t ngx_acs_webhook_secret(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf);
static ngx_int_t ngx_acs_webhook_authenticate(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx);
static ngx_int_t ngx_acs_webhook_content_type(ngx_http_request_t *r);
static ngx_int_t ngx_acs_webhook_aeg_type(ngx_http_request_t *r,
    ngx_uint_t *type);
static void ngx_acs_webhook_body(ngx_http_request_t *r);
static off_t ngx_acs_webhook_body_size(ngx_chain_t *cl);
static ngx_int_t ngx_acs_webhook_parse(ngx_http_request_t *r,
    ngx_acs_event_parser_t *p);
static ngx_int_t ngx_acs_webhook_events(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx,
    ngx_array_t *events);
static ngx_int_t ngx_acs_webhook_validation(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx,
    ngx_acs_event_t *ev);
static ngx_int_t ngx_acs_webhook_deletion(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_acs_event_t *ev);
static ngx_int_t ngx_acs_webhook_scope_allowed(ngx_array_t *topics,
    ngx_str_t *scope);
static ngx_int_t ngx_acs_webhook_refuse(ngx_http_request_t *r,
    ngx_uint_t status, ngx_acs_result_e result, ngx_str_t *event_id,
    const char *fmt, ...);


static ngx_str_t  ngx_acs_allow = ngx_string("POST, OPTIONS");

static ngx_str_t  ngx_acs_origins[] = {
    ngx_string("eventgrid.azure.net"),
    ngx_string("eventgrid.azure.us"),
    ngx_string("eventgrid.azure.cn"),
    ngx_null_string
};

static ngx_str_t  ngx_acs_validation_event =
    ngx_string("Microsoft.EventGrid.SubscriptionValidationEvent");
static ngx_str_t  ngx_acs_deletion_event =
    ngx_string("Microsoft.EventGrid.SubscriptionDeletedEvent");


ngx_int_t
ngx_acs_webhook_handler(ngx_http_request_t *r)
{
    return ngx_acs_refusal(r, ngx_acs_webhook_request(r));
}


/*
 * The checks before the body, in the order of their cost (method, secret,
 * subscription, token, Content-Type, aeg-event-type); a refusal is
 * answered by the caller
 */

static ngx_int_t
ngx_acs_webhook_request(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_acs_webhook_ctx_t           *wh;
    ngx_http_acs_notify_ctx_t       *ctx;
    ngx_http_acs_notify_loc_conf_t  *ancf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);

    ctx = ngx_acs_ctx(r);
    wh = ngx_pcalloc(r->pool, sizeof(ngx_acs_webhook_ctx_t));
    if (ctx == NULL || wh == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = wh;

    if (r->method != NGX_HTTP_POST && r->method != NGX_HTTP_OPTIONS) {

        if (ngx_acs_add_header(r, "Allow", &ngx_acs_allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_acs_webhook_refuse(r, NGX_HTTP_NOT_ALLOWED,
                                      NGX_ACS_RESULT_REJECTED_METHOD, NULL,
                                      "method %V not allowed",
                                      &r->method_name);
    }

    if (r->method == NGX_HTTP_OPTIONS) {

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "acs_notify: handshake, %s", ancf->secret_in_query
                       ? "the secret in the query string checked"
                       : "no secret checked");

        if (ancf->secret_in_query) {
            rc = ngx_acs_webhook_secret(r, ancf);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        return ngx_acs_webhook_options(r, ancf);
    }

    rc = ngx_acs_webhook_authenticate(r, ancf, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_acs_webhook_content_type(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_acs_webhook_aeg_type(r, &wh->aeg_type);
    if (rc != NGX_OK) {
        return rc;
    }

    if (wh->tokenless && wh->aeg_type != NGX_ACS_AEG_VALIDATION) {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                      NGX_ACS_RESULT_REJECTED_TOKEN, NULL,
                                      "no bearer token");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_acs_webhook_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * CloudEvents abuse protection: consent is WebHook-Allowed-Origin (and
 * WebHook-Allowed-Rate when a rate was asked for), refusal its absence
 */

static ngx_int_t
ngx_acs_webhook_options(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf)
{
    ngx_str_t         *o, star = ngx_string("*");
    ngx_int_t          rc;
    ngx_table_elt_t   *origin, *rate;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_acs_add_header(r, "Allow", &ngx_acs_allow) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    origin = ngx_acs_header(r, "WebHook-Request-Origin");

    if (origin == NULL) {
        ngx_acs_set_result(r, NGX_ACS_RESULT_OPTIONS);
        return ngx_acs_send(r, NGX_HTTP_OK, NULL);
    }

    for (o = ngx_acs_origins; o->len; o++) {
        if (origin->value.len == o->len
            && ngx_strncasecmp(origin->value.data, o->data, o->len) == 0)
        {
            break;
        }
    }

    if (o->len == 0) {
        /* refusal is the absence of WebHook-Allowed-Origin */
        return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                      NGX_ACS_RESULT_REJECTED_ORIGIN, NULL,
                                      "abuse protection handshake from "
                                      "unknown origin \"%V\"",
                                      ngx_acs_log_str(r->pool,
                                                      &origin->value));
    }

    if (ngx_acs_add_header(r, "WebHook-Allowed-Origin", o) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rate = ngx_acs_header(r, "WebHook-Request-Rate");

    if (rate != NULL
        && ngx_acs_add_header(r, "WebHook-Allowed-Rate", &star)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(ancf->log_level, r->connection->log, 0,
                  "acs_notify: abuse protection handshake from \"%V\" "
                  "accepted", o);

    ngx_acs_set_result(r, NGX_ACS_RESULT_VALIDATED);

    return ngx_acs_send(r, NGX_HTTP_OK, NULL);
}


/* acs_notify_secret: a digest compare */

static ngx_int_t
ngx_acs_webhook_secret(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf)
{
    ngx_int_t  rc;
    ngx_str_t  value;

    if (ancf->secret == NULL) {
        return NGX_OK;
    }

    if (ngx_http_complex_value(r, ancf->secret, &value) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = (value.len == 0) ? NGX_DECLINED
                          : ngx_acs_secret_match(ancf->secrets, &value);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                      NGX_ACS_RESULT_REJECTED_SECRET, NULL,
                                      value.len ? "secret mismatch"
                                                : "no secret");
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "acs_notify: secret matched");

    return NGX_OK;
}


/*
 * The shared secret first, then the subscription name, then the bearer
 * token (RSA once per token, then a cache hit).
 */

static ngx_int_t
ngx_acs_webhook_authenticate(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx)
{
    u_char                 *p, *last;
    ngx_int_t               rc;
    ngx_str_t               token;
    const char             *reason;
    ngx_table_elt_t        *h;
    ngx_acs_webhook_ctx_t  *wh;

    wh = ctx->data;

    rc = ngx_acs_webhook_secret(r, ancf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ancf->subscriptions != NULL) {
        h = ngx_acs_header(r, "aeg-subscription-name");

        if (h == NULL
            || ngx_acs_pattern_match(ancf->subscriptions, &h->value) != NGX_OK)
        {

            if (h == NULL) {
                return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                          NGX_ACS_RESULT_REJECTED_SUBSCRIPTION,
                                          NULL, "no aeg-subscription-name");
            }

            return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                          NGX_ACS_RESULT_REJECTED_SUBSCRIPTION,
                                          NULL, "subscription \"%V\" not "
                                          "allowed",
                                          ngx_acs_log_str(r->pool, &h->value));
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "acs_notify: subscription \"%V\" allowed",
                       ngx_acs_log_str(r->pool, &h->value));
    }

    if (ancf->entra == NULL) {
        return NGX_OK;
    }

    h = r->headers_in.authorization;

    if (h == NULL) {
        /* a validation handshake may come without a token: see below */
        wh->tokenless = 1;
        return NGX_OK;
    }

    p = h->value.data;
    last = p + h->value.len;

    if (h->value.len < 7 || ngx_strncasecmp(p, (u_char *) "Bearer ", 7) != 0) {
        reason = "authorization is not a bearer token";
        goto unauthorized_token;
    }

    for (p += 7; p < last && *p == ' '; p++) { /* void */ }

    token.data = p;
    token.len = last - p;

    rc = ngx_acs_entra_verify(ancf->entra, &token, ngx_time(), r->pool,
                              r->connection->log, &reason);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_AGAIN) {
        /* no key set fetched yet: Event Grid delivers again later */
        return ngx_acs_webhook_refuse(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      NGX_ACS_RESULT_UNAVAILABLE_JWKS,
                                      NULL, "%s", reason);
    }

unauthorized_token:

    return ngx_acs_webhook_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                  NGX_ACS_RESULT_REJECTED_TOKEN, NULL,
                                  "%s", reason);
}


/*
 * application/json, application/cloudevents+json and
 * application/cloudevents-batch+json, with an optional UTF-8 charset.
 */

static ngx_int_t
ngx_acs_webhook_content_type(ngx_http_request_t *r)
{
    u_char     *p, *last, *semi;
    ngx_str_t   type, param;

    static ngx_str_t  types[] = {
        ngx_string("application/json"),
        ngx_string("application/cloudevents+json"),
        ngx_string("application/cloudevents-batch+json"),
        ngx_null_string
    };
    ngx_str_t  *t;

    if (r->headers_in.content_type == NULL) {
        ngx_str_set(&type, "none");
        goto unsupported;
    }

    type = r->headers_in.content_type->value;
    p = type.data;
    last = p + type.len;

    semi = ngx_strlchr(p, last, ';');
    type.len = (semi ? semi : last) - p;

    while (type.len && type.data[type.len - 1] == ' ') {
        type.len--;
    }

    for (t = types; t->len; t++) {
        if (t->len == type.len
            && ngx_strncasecmp(t->data, type.data, type.len) == 0)
        {
            break;
        }
    }

    if (t->len == 0) {
        goto unsupported;
    }

    /* parameters: only charset=utf-8 means anything, and only it is allowed */

    while (semi) {
        p = semi + 1;
        semi = ngx_strlchr(p, last, ';');

        param.data = p;
        param.len = (semi ? semi : last) - p;

        while (param.len && *param.data == ' ') {
            param.data++;
            param.len--;
        }

        while (param.len && param.data[param.len - 1] == ' ') {
            param.len--;
        }

        if (param.len >= 8
            && ngx_strncasecmp(param.data, (u_char *) "charset=", 8) == 0)
        {
            param.data += 8;
            param.len -= 8;

            if (param.len >= 2 && param.data[0] == '"'
                && param.data[param.len - 1] == '"')
            {
                param.data++;
                param.len -= 2;
            }

            if (!(param.len == 5
                  && ngx_strncasecmp(param.data, (u_char *) "utf-8", 5) == 0))
            {
                type = r->headers_in.content_type->value;
                goto unsupported;
            }
        }
    }

    return NGX_OK;

unsupported:


    if (r->headers_in.content_type) {
        type = r->headers_in.content_type->value;
    }

    return ngx_acs_webhook_refuse(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                  NGX_ACS_RESULT_REJECTED_CONTENT_TYPE, NULL,
                                  "unsupported content type \"%V\"",
                                  ngx_acs_log_str(r->pool, &type));
}


static ngx_int_t
ngx_acs_webhook_aeg_type(ngx_http_request_t *r, ngx_uint_t *type)
{
    ngx_table_elt_t  *h;

    static struct {
        ngx_str_t           name;
        ngx_uint_t          type;
    } types[] = {
        { ngx_string("Notification"), NGX_ACS_AEG_NOTIFICATION },
        { ngx_string("SubscriptionValidation"), NGX_ACS_AEG_VALIDATION },
        { ngx_string("SubscriptionDeletion"), NGX_ACS_AEG_DELETION },
        { ngx_string("Unsubscribe"), NGX_ACS_AEG_DELETION },
        { ngx_null_string, 0 }
    };
    ngx_uint_t  i;

    h = ngx_acs_header(r, "aeg-event-type");

    if (h != NULL) {
        for (i = 0; types[i].name.len; i++) {
            if (types[i].name.len == h->value.len
                && ngx_strncasecmp(types[i].name.data, h->value.data,
                                   h->value.len) == 0)
            {
                *type = types[i].type;
                return NGX_OK;
            }
        }
    }


    if (h == NULL) {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                      NGX_ACS_RESULT_REJECTED_AEG_EVENT_TYPE,
                                      NULL, "no aeg-event-type header");
    }

    return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                  NGX_ACS_RESULT_REJECTED_AEG_EVENT_TYPE,
                                  NULL, "unknown aeg-event-type \"%V\"",
                                  ngx_acs_log_str(r->pool, &h->value));
}


static void
ngx_acs_webhook_body(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_acs_notify_ctx_t       *ctx;
    ngx_acs_event_parser_t          *p;
    ngx_http_acs_notify_loc_conf_t  *ancf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (r->request_body == NULL || r->request_body->bufs == NULL
        || ngx_acs_webhook_body_size(r->request_body->bufs) == 0)
    {
        rc = ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                    NGX_ACS_RESULT_REJECTED_JSON, NULL,
                                    "empty body");
        goto done;
    }

    p = ngx_acs_event_parser_create(r->pool, NGX_ACS_EVENT_MAX_SIZE,
                                    NGX_ACS_EVENT_MAX_EVENTS);
    if (p == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    rc = ngx_acs_webhook_parse(r, p);

    if (rc == NGX_OK) {
        rc = ngx_acs_webhook_events(r, ancf, ctx,
                                    ngx_acs_event_parser_events(p));

    } else if (rc == NGX_DECLINED) {
        rc = ngx_acs_webhook_refuse(r, ngx_acs_event_parser_status(p),
                                    ngx_acs_event_parser_status(p) == 413
                                    ? NGX_ACS_RESULT_REJECTED_TOO_LARGE
                                    : NGX_ACS_RESULT_REJECTED_JSON,
                                    NULL, "%V",
                                    ngx_acs_event_parser_error(p));
    }

done:

    if (rc == NGX_DONE) {
        /* the pushes answer later (ngx_acs_dispatch.c) */
        return;
    }

    ngx_http_finalize_request(r, ngx_acs_refusal(r, rc));
}


static off_t
ngx_acs_webhook_body_size(ngx_chain_t *cl)
{
    off_t  size;

    for (size = 0; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    return size;
}


/*
 * Feeds the body to the streaming parser buffer by buffer, reading the
 * parts nginx wrote to a temporary file in 64k chunks.
 */

static ngx_int_t
ngx_acs_webhook_parse(ngx_http_request_t *r, ngx_acs_event_parser_t *p)
{
    off_t         pos;
    u_char       *chunk;
    size_t        size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    chunk = NULL;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            if (ngx_acs_event_parse(p, b->pos, b->last - b->pos) != NGX_OK) {
                return NGX_DECLINED;
            }

            continue;
        }

        if (chunk == NULL) {
            chunk = ngx_pnalloc(r->pool, NGX_ACS_READ_CHUNK);
            if (chunk == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        for (pos = b->file_pos; pos < b->file_last; pos += n) {
            size = (size_t) ngx_min(b->file_last - pos, NGX_ACS_READ_CHUNK);

            n = ngx_read_file(b->file, chunk, size, pos);

            if (n == NGX_ERROR || n == 0) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (ngx_acs_event_parse(p, chunk, n) != NGX_OK) {
                return NGX_DECLINED;
            }
        }
    }

    if (ngx_acs_event_parse_done(p) != NGX_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_webhook_events(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx,
    ngx_array_t *events)
{
    ngx_uint_t              i, handshake;
    ngx_acs_event_t        *ev;
    ngx_acs_webhook_ctx_t  *wh;

    wh = ctx->data;
    ev = events->elts;
    ctx->events = events->nelts;
    ctx->event_id = ev[0].id;

    for (i = 0; i < events->nelts; i++) {
        ngx_acs_stats_event(&ev[i].type);
    }

    /* a handshake arrives alone, under its own aeg-event-type */

    for (i = 0; i < events->nelts; i++) {

        handshake = (ev[i].type.len == ngx_acs_validation_event.len
                     && ngx_strncasecmp(ev[i].type.data,
                                        ngx_acs_validation_event.data,
                                        ev[i].type.len) == 0)
                    || (ev[i].type.len == ngx_acs_deletion_event.len
                        && ngx_strncasecmp(ev[i].type.data,
                                           ngx_acs_deletion_event.data,
                                           ev[i].type.len) == 0);

        if (wh->aeg_type == NGX_ACS_AEG_NOTIFICATION) {
            if (handshake) {
                return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                           NGX_ACS_RESULT_REJECTED_SCHEMA, &ev[i].id,
                           "%V in a notification",
                           ngx_acs_log_str(r->pool, &ev[i].type));
            }

            continue;
        }

        if (events->nelts != 1) {
            return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                          NGX_ACS_RESULT_REJECTED_SCHEMA,
                                          &ev[i].id,
                                          "%ui events in a subscription %s",
                                          events->nelts,
                                          wh->aeg_type
                                          == NGX_ACS_AEG_VALIDATION
                                          ? "validation" : "deletion");
        }
    }

    switch (wh->aeg_type) {

    case NGX_ACS_AEG_VALIDATION:
        return ngx_acs_webhook_validation(r, ancf, ctx, &ev[0]);

    case NGX_ACS_AEG_DELETION:
        return ngx_acs_webhook_deletion(r, ancf, &ev[0]);

    default:
        break;
    }

    /* a batch is all or none: one foreign topic refuses the whole request */

    if (ancf->topics != NULL) {
        for (i = 0; i < events->nelts; i++) {
            if (ngx_acs_pattern_match(ancf->topics, &ev[i].topic) != NGX_OK) {
                return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                              NGX_ACS_RESULT_REJECTED_TOPIC,
                                              &ev[i].id,
                                              "topic \"%V\" not allowed",
                                              ngx_acs_log_str(r->pool,
                                                              &ev[i].topic));
            }
        }
    }

    for (i = 0; i < events->nelts; i++) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "acs_notify: event \"%V\" type \"%V\" subject \"%V\"",
                       ngx_acs_log_str(r->pool, &ev[i].id),
                       ngx_acs_log_str(r->pool, &ev[i].type),
                       ngx_acs_log_str(r->pool, &ev[i].subject));
    }

    if (ancf->hub) {
        return ngx_acs_dispatch(r, events);
    }

    /* no hub configured: events are checked and acknowledged only */

    ngx_acs_set_result(r, NGX_ACS_RESULT_CHECKED);

    return ngx_acs_send(r, NGX_HTTP_OK, NULL);
}


static ngx_int_t
ngx_acs_webhook_validation(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_http_acs_notify_ctx_t *ctx,
    ngx_acs_event_t *ev)
{
    u_char                 *p;
    ngx_str_t              *code, body;
    ngx_acs_webhook_ctx_t  *wh;

    wh = ctx->data;

    if (ev->type.len != ngx_acs_validation_event.len
        || ngx_strncasecmp(ev->type.data, ngx_acs_validation_event.data,
                           ev->type.len) != 0)
    {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                      NGX_ACS_RESULT_REJECTED_SCHEMA,
                                      &ev->id, "%V in a subscription "
                                      "validation",
                                      ngx_acs_log_str(r->pool, &ev->type));
    }

    /*
     * The topic of a validation event is the scope the subscription was
     * created at, e.g. "/subscriptions/{id}": it must be an allowed topic
     * or one of its parent scopes.
     */

    if (ancf->topics != NULL
        && ngx_acs_webhook_scope_allowed(ancf->topics, &ev->topic) != NGX_OK)
    {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                      NGX_ACS_RESULT_REJECTED_TOPIC, &ev->id,
                                      "validation for topic \"%V\" "
                                      "not allowed",
                                      ngx_acs_log_str(r->pool, &ev->topic));
    }

    if (wh->tokenless && ancf->topics == NULL) {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_UNAUTHORIZED,
                                      NGX_ACS_RESULT_REJECTED_TOKEN,
                                      &ev->id, "no bearer token, and no "
                                      "acs_notify_topics to accept a "
                                      "validation without one");
    }

    if (ev->data_string.len) {
        if (ngx_acs_event_parse_data_string(r->pool, ev) == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    code = ngx_acs_event_string(ev, "validationcode");

    if (code == NULL || code->len == 0) {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                      NGX_ACS_RESULT_REJECTED_SCHEMA,
                                      &ev->id, "validation without "
                                      "data.validationCode");
    }

    body.len = sizeof("{\"validationResponse\":\"\"}") - 1
               + ngx_acs_json_escape_len(code);
    body.data = ngx_pnalloc(r->pool, body.len);
    if (body.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body.data, "{\"validationResponse\":\"",
                   sizeof("{\"validationResponse\":\"") - 1);
    p = ngx_acs_json_escape(p, code);
    p = ngx_cpymem(p, "\"}", 2);

    ngx_log_error(ancf->log_level, r->connection->log, 0,
                  "acs_notify: subscription validation for topic \"%V\" "
                  "accepted%s", ngx_acs_log_str(r->pool, &ev->topic),
                  wh->tokenless ? " without a bearer token" : "");

    ngx_acs_set_result(r, NGX_ACS_RESULT_VALIDATED);

    return ngx_acs_send(r, NGX_HTTP_OK, &body);
}


static ngx_int_t
ngx_acs_webhook_deletion(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_acs_event_t *ev)
{
    ngx_str_t  *id, none = ngx_string("unknown");

    if (ev->type.len != ngx_acs_deletion_event.len
        || ngx_strncasecmp(ev->type.data, ngx_acs_deletion_event.data,
                           ev->type.len) != 0)
    {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_BAD_REQUEST,
                                      NGX_ACS_RESULT_REJECTED_SCHEMA,
                                      &ev->id, "%V in a subscription "
                                      "deletion",
                                      ngx_acs_log_str(r->pool, &ev->type));
    }

    if (ev->data_string.len) {
        if (ngx_acs_event_parse_data_string(r->pool, ev) == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    id = ngx_acs_event_string(ev, "eventsubscriptionid");
    if (id == NULL) {
        id = &none;
    }

    if (ancf->topics != NULL
        && ngx_acs_webhook_scope_allowed(ancf->topics, &ev->topic) != NGX_OK)
    {
        return ngx_acs_webhook_refuse(r, NGX_HTTP_FORBIDDEN,
                                      NGX_ACS_RESULT_REJECTED_TOPIC, &ev->id,
                                      "deletion for topic \"%V\" "
                                      "not allowed",
                                      ngx_acs_log_str(r->pool, &ev->topic));
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "acs_notify: subscription deleted: \"%V\"",
                  ngx_acs_log_str(r->pool, id));

    ngx_acs_set_result(r, NGX_ACS_RESULT_DELETED);

    return ngx_acs_send(r, NGX_HTTP_OK, NULL);
}


/* scope is an allowed topic, or a parent path of one */

static ngx_int_t
ngx_acs_webhook_scope_allowed(ngx_array_t *topics, ngx_str_t *scope)
{
    ngx_uint_t          i;
    ngx_acs_pattern_t  *pat;

    if (ngx_acs_pattern_match(topics, scope) == NGX_OK) {
        return NGX_OK;
    }

    pat = topics->elts;

    for (i = 0; i < topics->nelts; i++) {
        if (scope->len < pat[i].value.len
            && pat[i].value.data[scope->len] == '/'
            && ngx_strncasecmp(scope->data, pat[i].value.data, scope->len)
               == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * Logs a refusal once at acs_notify_log_level, records it for the answer
 * ({"error":{"code":...,"message":...}}, the code the result's name after
 * the colon) and returns the status.  A 503 is no refusal of the sender's:
 * "unavailable:<code>", at warn.  A credential refused gets no detail in
 * the answer, and WWW-Authenticate where Entra ID tokens are expected.
 */

static ngx_int_t
ngx_acs_webhook_refuse(ngx_http_request_t *r, ngx_uint_t status,
    ngx_acs_result_e result, ngx_str_t *event_id, const char *fmt, ...)
{
    u_char                          *last, msg[NGX_MAX_ERROR_STR];
    va_list                          args;
    ngx_uint_t                       level;
    const char                      *what, *code;
    ngx_table_elt_t                 *h;
    ngx_http_acs_notify_loc_conf_t  *ancf;

    static ngx_str_t  bearer = ngx_string("Bearer error=\"invalid_token\"");
    static u_char     credential[] = "missing or invalid credential";

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE) {
        level = NGX_LOG_WARN;
        what = "unavailable";

    } else {
        level = ancf->log_level;
        what = "rejected";
    }

    code = ngx_acs_result_code(result);

    va_start(args, fmt);
    last = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    if (event_id && event_id->len) {
        ngx_log_error(level, r->connection->log, 0,
                      "acs_notify: %s %ui %s: %*s, event \"%V\"",
                      what, status, code, last - msg, msg,
                      ngx_acs_log_str(r->pool, event_id));

    } else {
        ngx_log_error(level, r->connection->log, 0,
                      "acs_notify: %s %ui %s: %*s",
                      what, status, code, last - msg, msg);
    }

    ngx_acs_set_result(r, result);

    if (status != NGX_HTTP_UNAUTHORIZED) {
        return ngx_acs_refuse(r, status, code, msg, last - msg);
    }

    if (ancf->entra != NULL) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        h->value = bearer;
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
        r->headers_out.www_authenticate = h;
    }

    return ngx_acs_refuse(r, status, code, credential,
                          sizeof(credential) - 1);
}
