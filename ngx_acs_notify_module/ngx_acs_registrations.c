
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The device registration REST API, under the prefix of the location
 * holding acs_notify_registrations (paths: ngx_acs_regpath.c):
 *
 *     PUT    users/{rawId}/devices/{deviceId}
 *     GET    users/{rawId}/devices[/{deviceId}]
 *     DELETE users/{rawId}[/devices/{deviceId}]
 *
 * Requests are signed the way ACS signs its own REST calls
 * (ngx_acs_hmac.c): the signature is checked from the headers before the
 * body is read, the body against the signed content hash after.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_http.h"
#include "ngx_acs_notify.h"
#include "ngx_acs_crypto.h"
#include "ngx_acs_json.h"
#include "ngx_acs_hmac.h"
#include "ngx_acs_store.h"
#include "ngx_acs_regpath.h"
#include "ngx_acs_registrations.h"


#define NGX_ACS_REG_BODY_MAX   16384
#define NGX_ACS_DATE_SKEW      300
#define NGX_ACS_TTL_MIN        300
#define NGX_ACS_TTL_MAX        15552000


typedef struct {
    ngx_acs_reg_path_t          path;
    ngx_str_t                   content_hash;
} ngx_acs_reg_request_t;


static ngx_int_t ngx_acs_reg_route(ngx_http_request_t *r,
    ngx_acs_reg_request_t *rq);
static ngx_int_t ngx_acs_reg_check_ids(ngx_http_request_t *r,
    ngx_acs_reg_request_t *rq);
static ngx_int_t ngx_acs_reg_authenticate(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_acs_reg_request_t *rq);
static void ngx_acs_reg_body(ngx_http_request_t *r);
static ngx_int_t ngx_acs_reg_body_bytes(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_acs_reg_device(ngx_http_request_t *r,
    ngx_acs_reg_request_t *rq, ngx_str_t *body, ngx_acs_device_t *dev,
    long long *ttl);
static ngx_int_t ngx_acs_reg_store(ngx_http_request_t *r,
    ngx_acs_reg_request_t *rq, ngx_str_t *body);
static void ngx_acs_reg_stored(ngx_acs_store_op_t *op);
static ngx_int_t ngx_acs_reg_answer(ngx_http_request_t *r,
    ngx_acs_store_op_t *op);
static ngx_int_t ngx_acs_reg_check_b64url(ngx_str_t *s, size_t max);
static void ngx_acs_reg_gen_device(ngx_acs_gen_t *gen, ngx_str_t *raw_id,
    ngx_acs_device_t *dev);
static ngx_int_t ngx_acs_reg_send_gen(ngx_http_request_t *r,
    ngx_uint_t status, ngx_acs_gen_t *gen);
static ngx_int_t ngx_acs_reg_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...);
static ngx_int_t ngx_acs_reg_failed(ngx_http_request_t *r, ngx_int_t rc);


/* a failure of ours, logged where it happened, still answered in JSON */

static ngx_str_t  ngx_acs_reg_internal_error = ngx_string(
    "{\"error\":{\"code\":\"InternalError\",\"message\":\"the request "
    "failed on the server, its error log says why\"}}");


ngx_int_t
ngx_acs_registrations_handler(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_acs_reg_request_t            *rq;
    ngx_http_acs_notify_ctx_t        *ctx;
    ngx_http_acs_notify_loc_conf_t   *ancf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);

    ctx = ngx_acs_ctx(r);
    rq = ngx_pcalloc(r->pool, sizeof(ngx_acs_reg_request_t));
    if (ctx == NULL || rq == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->data = rq;
    ctx->registration = 1;

    rc = ngx_acs_reg_route(r, rq);

    if (rc == NGX_OK) {
        rc = ngx_acs_reg_authenticate(r, ancf, rq);
    }

    if (rc == NGX_OK) {
        rc = ngx_acs_reg_check_ids(r, rq);
    }

    if (rc == NGX_OK && r->headers_in.content_length_n > NGX_ACS_REG_BODY_MAX)
    {
        rc = ngx_acs_reg_refuse(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                               "PayloadTooLarge", "body over %d bytes",
                               NGX_ACS_REG_BODY_MAX);
    }

    if (rc == NGX_OK && r->method == NGX_HTTP_PUT) {
        if (r->headers_in.content_type == NULL
            || r->headers_in.content_type->value.len < 16
            || ngx_strncasecmp(r->headers_in.content_type->value.data,
                               (u_char *) "application/json", 16) != 0
            || (r->headers_in.content_type->value.len > 16
                && r->headers_in.content_type->value.data[16] != ';'))
        {
            rc = ngx_acs_reg_refuse(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                   "UnsupportedMediaType",
                                   "Content-Type must be application/json");
        }
    }

    if (rc != NGX_OK) {
        /* a refusal (or a failure) before the body: dropped, answered */
        return ngx_acs_reg_failed(r, rc);
    }

    rc = ngx_http_read_client_request_body(r, ngx_acs_reg_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The path is taken undecoded (r->unparsed_uri) and split on "/" before
 * each segment is percent-decoded, so that a raw id may hold any byte,
 * "/" included.
 */

static ngx_int_t
ngx_acs_reg_route(ngx_http_request_t *r, ngx_acs_reg_request_t *rq)
{
    u_char                    *p, *last;
    ngx_int_t                  rc;
    ngx_uint_t                 allowed;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->unparsed_uri.data;
    last = ngx_strlchr(p, p + r->unparsed_uri.len, '?');
    if (last == NULL) {
        last = p + r->unparsed_uri.len;
    }

    if ((size_t) (last - p) < clcf->name.len
        || ngx_strncmp(p, clcf->name.data, clcf->name.len) != 0)
    {
        goto not_found;
    }

    p += clcf->name.len;

    if (clcf->name.len && clcf->name.data[clcf->name.len - 1] != '/') {
        if (p == last || *p != '/') {
            goto not_found;
        }
        p++;
    }

    rc = ngx_acs_reg_path_parse(r->pool, p, last, &rq->path);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        goto not_found;
    }

    /* methods of each resource */

    if (rq->path.device_id.len) {
        allowed = NGX_HTTP_GET|NGX_HTTP_PUT|NGX_HTTP_DELETE;

    } else if (rq->path.devices) {
        allowed = NGX_HTTP_GET;

    } else {
        allowed = NGX_HTTP_DELETE;
    }

    if (!(r->method & allowed)) {
        return ngx_acs_reg_refuse(r, NGX_HTTP_NOT_ALLOWED, "MethodNotAllowed",
                                 "method %V not allowed here",
                                 &r->method_name);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "acs_notify registration: %V of user \"%V\" %s",
                   &r->method_name,
                   ngx_acs_log_str(r->pool, &rq->path.raw_id),
                   rq->path.device_id.len ? "device"
                   : rq->path.devices ? "devices" : "(all)");

    return NGX_OK;

not_found:

    return ngx_acs_reg_refuse(r, NGX_HTTP_NOT_FOUND, "NotFound",
                             "no such resource");
}


static ngx_int_t
ngx_acs_reg_check_ids(ngx_http_request_t *r, ngx_acs_reg_request_t *rq)
{
    const char  *code, *reason;

    if (ngx_acs_reg_path_check(&rq->path, &code, &reason) != NGX_OK) {
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, code, "%s",
                                 reason);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_reg_authenticate(ngx_http_request_t *r,
    ngx_http_acs_notify_loc_conf_t *ancf, ngx_acs_reg_request_t *rq)
{
    time_t            date;
    ngx_str_t         path, *host;
    ngx_int_t         rc;
    const char       *reason;
    ngx_table_elt_t  *h_date, *h_hash;

    if (ancf->hmac_keys == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "acs_notify: acs_notify_registrations without "
                      "acs_notify_hmac_key refuses every request");
        reason = "no acs_notify_hmac_key configured";
        goto unauthorized;
    }

    h_date = ngx_acs_header(r, "x-ms-date");
    h_hash = ngx_acs_header(r, "x-ms-content-sha256");

    if (h_date == NULL || h_hash == NULL
        || r->headers_in.authorization == NULL || r->headers_in.host == NULL)
    {
        reason = "missing x-ms-date, x-ms-content-sha256, host or "
                 "authorization";
        goto unauthorized;
    }

    date = ngx_parse_http_time(h_date->value.data, h_date->value.len);

    if (date == NGX_ERROR) {
        reason = "x-ms-date is not an RFC 1123 date";
        goto unauthorized;
    }

    if (date < ngx_time() - NGX_ACS_DATE_SKEW) {
        reason = "x-ms-date more than 5 minutes in the past";
        goto unauthorized;
    }

    if (date > ngx_time() + NGX_ACS_DATE_SKEW) {
        reason = "x-ms-date more than 5 minutes in the future";
        goto unauthorized;
    }

    /* the path and query as sent on the wire */

    path = r->unparsed_uri;
    host = &r->headers_in.host->value;

    rc = ngx_acs_hmac_verify(ancf->hmac_keys, &r->method_name, &path,
                             &h_date->value, host, &h_hash->value,
                             &r->headers_in.authorization->value, r->pool,
                             &reason);
    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        goto unauthorized;
    }

    rq->content_hash = h_hash->value;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "acs_notify registration: signature verified");

    return NGX_OK;

unauthorized:

    return ngx_acs_reg_refuse(r, NGX_HTTP_UNAUTHORIZED, "Unauthorized",
                             "%s", reason);
}


static void
ngx_acs_reg_body(ngx_http_request_t *r)
{
    u_char                      hash[32], b64[64];
    ngx_str_t                   body, given, computed;
    ngx_int_t                   rc;
    unsigned int                len;
    ngx_acs_reg_request_t      *rq;
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
    rq = ctx->data;

    rc = ngx_acs_reg_body_bytes(r, &body);

    if (rc == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        /* a chunked body, whose size was not known before */
        rc = ngx_acs_reg_refuse(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                               "PayloadTooLarge", "body over %d bytes",
                               NGX_ACS_REG_BODY_MAX);
        goto done;
    }

    if (rc != NGX_OK) {
        goto done;
    }

    /* the body must be the one whose hash was signed */

    if (EVP_Digest(body.data, body.len, hash, &len, ngx_acs_sha256(),
                   NULL) != 1)
    {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    given.data = hash;
    given.len = 32;
    computed.data = b64;
    ngx_encode_base64(&computed, &given);

    if (computed.len != rq->content_hash.len
        || ngx_strncmp(computed.data, rq->content_hash.data, computed.len)
           != 0)
    {
        rc = ngx_acs_reg_refuse(r, NGX_HTTP_UNAUTHORIZED, "Unauthorized",
                               "body does not match x-ms-content-sha256");
        goto done;
    }

    rc = ngx_acs_reg_store(r, rq, &body);

    if (rc == NGX_DONE) {
        /* answered when the store is done: at once, or later */
        return;
    }

done:

    ngx_http_finalize_request(r, ngx_acs_reg_failed(r, rc));
}


/* the body as one buffer: it is small (16k), but may sit in a file */

static ngx_int_t
ngx_acs_reg_body_bytes(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    off_t         size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->data = (u_char *) "";
    body->len = 0;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (size > NGX_ACS_REG_BODY_MAX) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    body->data = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (body->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                              b->file_pos);
            if (n != b->file_last - b->file_pos) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            p += n;
            continue;
        }

        p = ngx_cpymem(p, b->pos, b->last - b->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}


/*
 * The device of a PUT body, checked: NGX_OK, or the status of the
 * refusal.  *ttl is ttlSeconds, or -1 when the body has none.
 */

static ngx_int_t
ngx_acs_reg_device(ngx_http_request_t *r, ngx_acs_reg_request_t *rq,
    ngx_str_t *body, ngx_acs_device_t *dev, long long *ttl)
{
    u_char              *last, names[128];
    yajl_val             tree, v;
    char                *why;
    ngx_str_t            name;
    ngx_acs_platform_t  *platform;

    *ttl = -1;

    /* a field read up to a NUL would be another field: refused whole */

    why = ngx_acs_json_check(body);

    if (why) {
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidJson",
                                 "the body %s", why);
    }

    tree = ngx_acs_json_tree(r->pool, body);

    if (tree == NULL || !YAJL_IS_OBJECT(tree)) {
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidJson",
                                 "body is not a JSON object");
    }

    ngx_memzero(dev, sizeof(ngx_acs_device_t));
    dev->device_id = rq->path.device_id;

    platform = NULL;

    if (ngx_acs_json_tree_string(tree, "platform", &name) == NGX_OK) {
        platform = ngx_acs_platform_find(&name);
    }

    if (platform == NULL) {
        last = ngx_acs_platform_names(names, names + sizeof(names), ", ");
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidPlatform",
                                 "\"platform\" must be one of %*s",
                                 last - names, names);
    }

    dev->platform = platform->id;

    if (ngx_acs_json_tree_string(tree, "handle", &dev->handle) != NGX_OK
        || platform->check(&dev->handle) != NGX_OK)
    {
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidHandle",
                                 "\"handle\" is not a valid %V handle",
                                 &name);
    }

    if (platform->keys) {
        if (ngx_acs_json_tree_string(tree, "p256dh", &dev->p256dh) != NGX_OK
            || ngx_acs_reg_check_b64url(&dev->p256dh, 128) != NGX_OK
            || ngx_acs_json_tree_string(tree, "auth", &dev->auth) != NGX_OK
            || ngx_acs_reg_check_b64url(&dev->auth, 64) != NGX_OK)
        {
            return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidHandle",
                                     "%V registrations need base64url "
                                     "\"p256dh\" and \"auth\"",
                                     &platform->name);
        }
    }

    v = ngx_acs_json_tree_get(tree, "ttlSeconds");

    if (v == NULL || YAJL_IS_NULL(v)) {
        *ttl = -1;

    } else if (YAJL_IS_INTEGER(v)
               && YAJL_GET_INTEGER(v) >= NGX_ACS_TTL_MIN
               && YAJL_GET_INTEGER(v) <= NGX_ACS_TTL_MAX)
    {
        *ttl = YAJL_GET_INTEGER(v);

    } else {
        return ngx_acs_reg_refuse(r, NGX_HTTP_BAD_REQUEST, "InvalidTtl",
                                 "\"ttlSeconds\" must be an integer from "
                                 "%d to %d", NGX_ACS_TTL_MIN,
                                 NGX_ACS_TTL_MAX);
    }

    return NGX_OK;
}


/*
 * The request made an operation of the device store (ngx_acs_store.h):
 * NGX_DONE, answered when it is done, or the status of a refusal or
 * failure, answered by the caller
 */

static ngx_int_t
ngx_acs_reg_store(ngx_http_request_t *r, ngx_acs_reg_request_t *rq,
    ngx_str_t *body)
{
    ngx_int_t                         rc;
    long long                         ttl;
    ngx_acs_store_op_t               *op;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_acs_notify_module);

    op = ngx_pcalloc(r->pool, sizeof(ngx_acs_store_op_t));
    if (op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (r->method) {

    case NGX_HTTP_PUT:
        op->kind = NGX_ACS_STORE_PUT;
        break;

    case NGX_HTTP_GET:
        op->kind = rq->path.device_id.len ? NGX_ACS_STORE_GET
                                          : NGX_ACS_STORE_LIST;
        break;

    default: /* NGX_HTTP_DELETE, the methods are those of the route */
        op->kind = NGX_ACS_STORE_DELETE;
    }

    op->store = amcf->store;
    op->raw_id = rq->path.raw_id;
    op->device_id = rq->path.device_id;
    op->ttl = -1;
    op->pool = r->pool;
    op->log = r->connection->log;
    op->done = ngx_acs_reg_stored;
    op->data = r;

    if (ngx_acs_store_check(op) != NGX_OK) {
        return ngx_acs_reg_answer(r, op);
    }

    if (op->kind == NGX_ACS_STORE_PUT) {
        rc = ngx_acs_reg_device(r, rq, body, &op->dev, &ttl);
        if (rc != NGX_OK) {
            return rc;
        }

        op->ttl = ttl;
    }

    if (ngx_acs_store_start(op) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static void
ngx_acs_reg_stored(ngx_acs_store_op_t *op)
{
    ngx_http_request_t  *r = op->data;

    ngx_http_finalize_request(r, ngx_acs_reg_failed(r,
                                                    ngx_acs_reg_answer(r, op)));
}


/* the answer of a store's operation */

static ngx_int_t
ngx_acs_reg_answer(ngx_http_request_t *r, ngx_acs_store_op_t *op)
{
    ngx_uint_t                  i;
    ngx_acs_gen_t               gen;
    ngx_acs_device_t           *dev;
    ngx_http_acs_notify_ctx_t  *ctx;

    switch (op->status) {

    case NGX_HTTP_OK:
    case NGX_HTTP_CREATED:

        if (ngx_acs_gen_init(&gen, r->pool) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (op->kind != NGX_ACS_STORE_LIST) {
            ngx_acs_reg_gen_device(&gen, &op->raw_id, &op->dev);
            return ngx_acs_reg_send_gen(r, op->status, &gen);
        }

        ngx_acs_gen_map_open(&gen);
        ngx_acs_gen_key(&gen, "value");
        ngx_acs_gen_array_open(&gen);

        dev = op->devices.elts;
        for (i = 0; i < op->devices.nelts; i++) {
            ngx_acs_reg_gen_device(&gen, &op->raw_id, &dev[i]);
        }

        ngx_acs_gen_array_close(&gen);
        ngx_acs_gen_map_close(&gen);

        return ngx_acs_reg_send_gen(r, NGX_HTTP_OK, &gen);

    case NGX_HTTP_NO_CONTENT:
        return ngx_acs_send(r, NGX_HTTP_NO_CONTENT, NULL);

    default:
        if (op->code == NULL) {
            /* logged where it failed */
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
        ctx->retry_after = op->retry_after;

        return ngx_acs_reg_refuse(r, op->status, op->code, "%V",
                                  &op->reason);
    }
}


static ngx_int_t
ngx_acs_reg_check_b64url(ngx_str_t *s, size_t max)
{
    u_char  *p;

    if (s->len == 0 || s->len > max) {
        return NGX_DECLINED;
    }

    for (p = s->data; p < s->data + s->len; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '-'
              || *p == '='))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static void
ngx_acs_reg_gen_device(ngx_acs_gen_t *gen, ngx_str_t *raw_id,
    ngx_acs_device_t *dev)
{
    u_char               buf[sizeof("1970-01-01T00:00:00Z")];
    ngx_tm_t             tm;
    ngx_str_t            s;
    ngx_acs_platform_t  *p;

    p = ngx_acs_platform(dev->platform);

    ngx_acs_gen_map_open(gen);

    ngx_acs_gen_pair(gen, "rawId", raw_id);
    ngx_acs_gen_pair(gen, "deviceId", &dev->device_id);
    ngx_acs_gen_pair(gen, "platform", &p->name);
    ngx_acs_gen_pair(gen, "handle", &dev->handle);

    if (p->keys) {
        ngx_acs_gen_pair(gen, "p256dh", &dev->p256dh);
        ngx_acs_gen_pair(gen, "auth", &dev->auth);
    }

    /* a device that does not expire (an installation) has no expiresAt */

    if (dev->expires) {
        ngx_gmtime(dev->expires, &tm);
        s.data = buf;
        s.len = ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                            tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                            tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec)
                - buf;
        ngx_acs_gen_pair(gen, "expiresAt", &s);
    }

    ngx_acs_gen_map_close(gen);
}


static ngx_int_t
ngx_acs_reg_send_gen(ngx_http_request_t *r, ngx_uint_t status,
    ngx_acs_gen_t *gen)
{
    ngx_str_t  body;

    if (ngx_acs_gen_done(gen, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_acs_send(r, status, &body);
}


/*
 * A refusal: logged once at acs_notify_log_level, recorded for the answer
 * ({"error":{"code":...,"message":...}}); returns the status
 */

static ngx_int_t
ngx_acs_reg_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char                          *last, msg[NGX_MAX_ERROR_STR];
    va_list                          args;
    ngx_http_acs_notify_loc_conf_t  *ancf;

    static ngx_str_t  allow = ngx_string("GET, PUT, DELETE");

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);

    va_start(args, fmt);
    last = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    ngx_log_error(ancf->log_level, r->connection->log, 0,
                  "acs_notify: registration rejected %ui %s: %*s",
                  status, code, last - msg, msg);

    if (status == NGX_HTTP_NOT_ALLOWED
        && ngx_acs_add_header(r, "Allow", &allow) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_acs_refuse(r, status, code, msg, last - msg);
}


/*
 * The answer of a request that did not succeed: its refusal, or for a
 * failure of ours (logged where it happened) a JSON 500, never nginx's
 * HTML page
 */

static ngx_int_t
ngx_acs_reg_failed(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ctx && ctx->refused && rc == (ngx_int_t) ctx->status) {
        return ngx_acs_refusal(r, rc);
    }

    if (rc != NGX_HTTP_INTERNAL_SERVER_ERROR || r->header_sent) {
        return rc;
    }

    if (r->request_body == NULL) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return ngx_acs_send(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                        &ngx_acs_reg_internal_error);
}


