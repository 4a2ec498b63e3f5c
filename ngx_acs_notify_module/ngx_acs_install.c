
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Installations, as Notification Hubs' REST API has them (docs/
 * registrations.md, section 5):
 *
 *   PUT    /{hub}/installations/{id}   200, writes the whole installation
 *   GET    /{hub}/installations/{id}   200 with it, or 404
 *   DELETE /{hub}/installations/{id}   204, also when there was none
 *
 * with the hub's SAS token, a rule with the Listen right.  A device's
 * installation id is "acs-" and the first 20 bytes of SHA-256(raw id, "\n",
 * device id) in hex, so every node writes the same one for a device.  An
 * installation carries the user's tag ("u:", or "v:" for a VoIP device),
 * the device id as the tag "d:ID", and the user as userId.
 *
 * apns-voip devices live on the VoIP hub when the registry has one; so
 * that a device never has an installation on both hubs, a PUT deletes the
 * device's installation on the other hub after writing it.  A DELETE reads
 * first, as NH answers 204 whether the installation existed or not.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_crypto.h"
#include "ngx_acs_json.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_install.h"


#define NGX_ACS_INSTALL_RESPONSE   16384   /* an installation read */


typedef enum {
    NGX_ACS_HTTP_GET = 0,
    NGX_ACS_HTTP_PUT,
    NGX_ACS_HTTP_DELETE
} ngx_acs_http_method_e;


static ngx_int_t ngx_acs_install_step(ngx_acs_install_op_t *op);
static ngx_acs_hub_t *ngx_acs_install_hub(ngx_acs_install_op_t *op);
static ngx_int_t ngx_acs_install_request(ngx_acs_install_op_t *op,
    ngx_acs_hub_t *hub, ngx_acs_http_method_e method);
static void ngx_acs_install_answered(ngx_acs_http_t *h);
static ngx_int_t ngx_acs_install_body(ngx_acs_install_op_t *op);
static ngx_int_t ngx_acs_install_read(ngx_acs_install_op_t *op);
static void ngx_acs_install_fail(ngx_acs_install_op_t *op,
    ngx_acs_verdict_e verdict);
static void ngx_acs_install_finish(ngx_acs_install_op_t *op,
    ngx_uint_t status, const char *code, const char *fmt, ...);
static ngx_acs_hub_t *ngx_acs_install_other(ngx_acs_install_op_t *op,
    ngx_acs_hub_t *hub);
static void ngx_acs_install_rights(ngx_conf_t *cf, ngx_acs_hub_t *hub);
static ngx_int_t ngx_acs_install_voip(ngx_pool_t *pool, ngx_str_t *tag,
    ngx_str_t *voip);


char *
ngx_acs_install_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_install_conf_t **ic)
{
    u_char                  *p, *last, *start, *end, names[128];
    ngx_str_t                v, name;
    ngx_uint_t               i;
    ngx_acs_platform_t      *pf;
    ngx_acs_install_conf_t  *c;

    c = ngx_pcalloc(cf->pool, sizeof(ngx_acs_install_conf_t));
    if (c == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < nargs; i++) {

        if (ngx_acs_conf_param(&args[i], "hub=", &c->hub_name)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "voip_hub=", &c->voip_hub_name)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "platforms=", &v)) {

            p = v.data;
            last = v.data + v.len;

            while (p < last) {
                start = p;
                p = ngx_strlchr(p, last, ',');
                if (p == NULL) {
                    p = last;
                }

                name.data = start;
                name.len = p - start;

                pf = ngx_acs_platform_find(&name);
                if (pf == NULL) {
                    end = ngx_acs_platform_names(names,
                                                 names + sizeof(names),
                                                 " or ");
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "acs_notify_registry: unknown "
                                       "platform \"%V\" in platforms=, "
                                       "expected %*s", &name, end - names,
                                       names);
                    return NGX_CONF_ERROR;
                }

                c->platforms |= (1 << pf->id);

                if (p < last) {
                    p++;
                }
            }

            if (c->platforms == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_registry: empty platforms=");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_registry: invalid parameter \"%V\" "
                           "for a hub registry (ttl=, max_size= and "
                           "max_devices= are those of a registry on disk)",
                           &args[i]);
        return NGX_CONF_ERROR;
    }

    if (c->hub_name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_registry: hub= needs a name");
        return NGX_CONF_ERROR;
    }

    *ic = c;

    return NGX_CONF_OK;
}


ngx_int_t
ngx_acs_install_init_conf(ngx_conf_t *cf, ngx_acs_install_conf_t *ic,
    ngx_array_t *hubs)
{
    ngx_uint_t           id;
    ngx_acs_platform_t  *pf;

    ic->hub = ngx_acs_hub_find(hubs, &ic->hub_name);

    if (ic->hub == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_registry: no acs_notify_hub \"%V\"",
                           &ic->hub_name);
        return NGX_ERROR;
    }

    if (ic->voip_hub_name.len) {
        ic->voip_hub = ngx_acs_hub_find(hubs, &ic->voip_hub_name);

        if (ic->voip_hub == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_registry: no acs_notify_hub "
                               "\"%V\"", &ic->voip_hub_name);
            return NGX_ERROR;
        }
    }

    /* none given: the table's defaults; VoIP ones need a VoIP hub */

    if (ic->platforms == 0) {
        for (id = NGX_ACS_PLATFORM_APNS; id < NGX_ACS_PLATFORMS; id++) {
            pf = ngx_acs_platform(id);

            if (pf->hub_default
                && (pf->voip != NGX_ACS_VOIP_ONLY || ic->voip_hub))
            {
                ic->platforms |= (1 << id);
            }
        }
    }

    ngx_acs_install_rights(cf, ic->hub);

    if (ic->voip_hub && ic->voip_hub != ic->hub) {
        ngx_acs_install_rights(cf, ic->voip_hub);
    }

    return NGX_OK;
}


/*
 * A connection string does not say what its rule may do, but Azure's
 * default rules are named after their rights: say so when the name shows
 * that a right is missing (installations need Listen, pushes Send).
 */

static void
ngx_acs_install_rights(ngx_conf_t *cf, ngx_acs_hub_t *hub)
{
    u_char      name[256];
    size_t      len;
    ngx_uint_t  listen, send;

    len = ngx_min(hub->key_name.len, sizeof(name) - 1);
    ngx_strlow(name, hub->key_name.data, len);
    name[len] = '\0';

    if (ngx_strstr(name, "full") || ngx_strstr(name, "manage")) {
        return;
    }

    listen = (ngx_strstr(name, "listen") != NULL);
    send = (ngx_strstr(name, "send") != NULL);

    if (send && !listen) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "acs_notify_registry: the rule \"%V\" of "
                           "acs_notify_hub \"%V\" looks like a Send-only "
                           "rule; a hub registry needs Listen too "
                           "(installations) and Send (pushes)",
                           &hub->key_name, &hub->name);

    } else if (listen && !send) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "acs_notify_registry: the rule \"%V\" of "
                           "acs_notify_hub \"%V\" looks like a Listen-only "
                           "rule; a hub registry needs Send too (pushes)",
                           &hub->key_name, &hub->name);
    }
}


/* a byte that stands for itself in a tag: a-z 0-9 _ @ . : - */

static ngx_inline ngx_uint_t
ngx_acs_install_plain(u_char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
           || c == '@' || c == '.' || c == ':' || c == '-';
}


ngx_int_t
ngx_acs_install_tag(ngx_pool_t *pool, ngx_str_t *raw_id, ngx_str_t *out)
{
    u_char  *p, *s, *last;
    size_t   len;

    static u_char  hex[] = "0123456789abcdef";

    len = 2;
    last = raw_id->data + raw_id->len;

    for (s = raw_id->data; s < last; s++) {
        len += ngx_acs_install_plain(*s) ? 1 : 3;
    }

    if (raw_id->len == 0 || len > NGX_ACS_TAG_MAX) {
        out->data = NULL;
        out->len = len;
        return NGX_DECLINED;
    }

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    p = out->data;
    *p++ = 'u';
    *p++ = ':';

    for (s = raw_id->data; s < last; s++) {

        if (ngx_acs_install_plain(*s)) {
            *p++ = *s;
            continue;
        }

        *p++ = '#';
        *p++ = hex[*s >> 4];
        *p++ = hex[*s & 0xf];
    }

    out->len = p - out->data;

    return NGX_OK;
}


/* the VoIP tag of a user: "v:" where the user's tag has "u:" */

static ngx_int_t
ngx_acs_install_voip(ngx_pool_t *pool, ngx_str_t *tag, ngx_str_t *voip)
{
    voip->data = ngx_pnalloc(pool, tag->len);
    if (voip->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(voip->data, tag->data, tag->len);
    voip->data[0] = 'v';
    voip->len = tag->len;

    return NGX_OK;
}


ngx_int_t
ngx_acs_install_devices(ngx_acs_install_conf_t *ic, ngx_pool_t *pool,
    ngx_str_t *raw_id, ngx_array_t *devices)
{
    ngx_int_t            rc;
    ngx_str_t            tag, voip;
    ngx_uint_t           id;
    ngx_acs_device_t    *dev;
    ngx_acs_platform_t  *p;

    rc = ngx_acs_install_tag(pool, raw_id, &tag);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_null(&voip);

    for (id = NGX_ACS_PLATFORM_APNS; id < NGX_ACS_PLATFORMS; id++) {

        if (!(ic->platforms & (1 << id))) {
            continue;
        }

        p = ngx_acs_platform(id);

        if (p->voip == NGX_ACS_VOIP_ONLY && voip.data == NULL
            && ngx_acs_install_voip(pool, &tag, &voip) != NGX_OK)
        {
            return NGX_ERROR;
        }

        dev = ngx_array_push(devices);
        if (dev == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(dev, sizeof(ngx_acs_device_t));

        /* the platform's name stands for the device in logs */
        dev->device_id = p->name;
        dev->platform = p->id;
        dev->handle = (p->voip == NGX_ACS_VOIP_ONLY) ? voip : tag;
        dev->target = NGX_ACS_TARGET_TAG;
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_install_start(ngx_acs_install_op_t *op)
{
    u_char     *p, digest[32];
    ngx_str_t   in;

    in.len = op->raw_id.len + 1 + op->dev.device_id.len;
    in.data = ngx_pnalloc(op->pool, in.len);
    if (in.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(in.data, op->raw_id.data, op->raw_id.len);
    *p++ = '\n';
    ngx_memcpy(p, op->dev.device_id.data, op->dev.device_id.len);

    if (EVP_Digest(in.data, in.len, digest, NULL, ngx_acs_sha256(), NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    p = ngx_cpymem(op->id, "acs-", 4);
    ngx_hex_dump(p, digest, 20);

    switch (op->kind) {

    case NGX_ACS_INSTALL_PUT:
        if (ngx_acs_install_body(op) != NGX_OK) {
            return NGX_ERROR;
        }

        op->step = NGX_ACS_INSTALL_WRITE;
        break;

    case NGX_ACS_INSTALL_GET:
    case NGX_ACS_INSTALL_DELETE:
        op->step = NGX_ACS_INSTALL_READ;
        break;
    }

    return ngx_acs_install_step(op);
}


/* the request of the operation's step (ngx_acs_install.h) */

static ngx_int_t
ngx_acs_install_step(ngx_acs_install_op_t *op)
{
    ngx_acs_install_conf_t  *ic = op->conf;

    switch (op->step) {

    case NGX_ACS_INSTALL_WRITE:
        return ngx_acs_install_request(op, ngx_acs_install_hub(op),
                                       NGX_ACS_HTTP_PUT);

    case NGX_ACS_INSTALL_UNWRITE:
        return ngx_acs_install_request(op,
                                       ngx_acs_install_other(op,
                                                   ngx_acs_install_hub(op)),
                                       NGX_ACS_HTTP_DELETE);

    case NGX_ACS_INSTALL_READ:
        return ngx_acs_install_request(op, ic->hub, NGX_ACS_HTTP_GET);

    case NGX_ACS_INSTALL_READ_VOIP:
        return ngx_acs_install_request(op, ic->voip_hub, NGX_ACS_HTTP_GET);

    case NGX_ACS_INSTALL_REMOVE:
        return ngx_acs_install_request(op, op->at, NGX_ACS_HTTP_DELETE);
    }

    return NGX_ERROR;
}


/* the hub of the device: a VoIP platform's is the VoIP hub, if any */

static ngx_acs_hub_t *
ngx_acs_install_hub(ngx_acs_install_op_t *op)
{
    if (ngx_acs_platform(op->dev.platform)->voip == NGX_ACS_VOIP_ONLY
        && op->conf->voip_hub)
    {
        return op->conf->voip_hub;
    }

    return op->conf->hub;
}


/* the hub of the registry that is not hub, or NULL */

static ngx_acs_hub_t *
ngx_acs_install_other(ngx_acs_install_op_t *op, ngx_acs_hub_t *hub)
{
    ngx_acs_hub_t  *voip;

    voip = op->conf->voip_hub;

    if (voip == NULL || voip == op->conf->hub) {
        return NULL;
    }

    return (hub == voip) ? op->conf->hub : voip;
}


static ngx_int_t
ngx_acs_install_request(ngx_acs_install_op_t *op, ngx_acs_hub_t *hub,
    ngx_acs_http_method_e method)
{
    u_char            *p;
    size_t             size;
    ngx_str_t          token;
    ngx_uint_t         n;
    ngx_acs_http_t    *h;
    ngx_acs_header_t   lines[5];

    op->at = hub;
    token = ngx_acs_hub_token(hub, ngx_time());

    ngx_str_set(&lines[0].name, "Authorization");
    lines[0].value = token;
    ngx_str_set(&lines[1].name, "x-ms-version");
    lines[1].value = hub->api_version;
    ngx_str_set(&lines[2].name, "Expect");
    ngx_str_null(&lines[2].value);
    n = 3;

    if (method == NGX_ACS_HTTP_PUT) {
        ngx_str_set(&lines[3].name, "Content-Type");
        ngx_str_set(&lines[3].value, "application/json");
        n = 4;
    }

    size = hub->resource.len + sizeof("/installations/?api-version=") - 1
           + NGX_ACS_INSTALL_ID_LEN + hub->api_version.len + 1;

    size += ngx_acs_curl_headers_size(lines, n);

    op->buf = ngx_pnalloc(op->pool, size);
    if (op->buf == NULL) {
        return NGX_ERROR;
    }

    h = &op->http;
    ngx_memzero(h, sizeof(ngx_acs_http_t));

    h->url = (const char *) op->buf;
    p = ngx_sprintf(op->buf, "%V/installations/%*s?api-version=%V%Z",
                    &hub->resource, (size_t) NGX_ACS_INSTALL_ID_LEN, op->id,
                    &hub->api_version);

    h->headers = ngx_acs_curl_headers(lines, n, op->lines, p);
    ngx_acs_hub_transport(hub, h);
    h->handler = ngx_acs_install_answered;
    h->data = op;

    switch (method) {

    case NGX_ACS_HTTP_GET:
        h->get = 1;
        h->response = ngx_pnalloc(op->pool, NGX_ACS_INSTALL_RESPONSE);
        if (h->response == NULL) {
            return NGX_ERROR;
        }

        h->response_size = NGX_ACS_INSTALL_RESPONSE;
        break;

    case NGX_ACS_HTTP_PUT:
        h->method = "PUT";
        h->body = op->body.data;
        h->body_len = op->body.len;
        break;

    case NGX_ACS_HTTP_DELETE:
        /* no body */
        h->get = 1;
        h->method = "DELETE";
        break;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, op->log, 0,
                   "acs_notify install: %s %*s at hub \"%V\"",
                   h->method ? h->method : "GET",
                   (size_t) NGX_ACS_INSTALL_ID_LEN, op->id, &hub->name);

    return ngx_acs_curl_submit(h, op->log);
}


/* the installation of the device, as NH takes it */

static ngx_int_t
ngx_acs_install_body(ngx_acs_install_op_t *op)
{
    u_char              *p;
    ngx_str_t            id, tag, dtag, user;
    ngx_acs_gen_t        gen;
    ngx_acs_platform_t  *pf;

    pf = ngx_acs_platform(op->dev.platform);

    tag = op->tag;

    if (pf->voip == NGX_ACS_VOIP_ONLY
        && ngx_acs_install_voip(op->pool, &op->tag, &tag) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* userId: the user's tag without its "u:" */
    user.data = op->tag.data + 2;
    user.len = op->tag.len - 2;

    dtag.len = 2 + op->dev.device_id.len;
    dtag.data = ngx_pnalloc(op->pool, dtag.len);
    if (dtag.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(dtag.data, "d:", 2);
    ngx_memcpy(p, op->dev.device_id.data, op->dev.device_id.len);

    id.data = op->id;
    id.len = NGX_ACS_INSTALL_ID_LEN;

    if (ngx_acs_gen_init(&gen, op->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_pair(&gen, "installationId", &id);
    ngx_acs_gen_pair(&gen, "platform", &pf->installation);

    if (pf->keys) {
        ngx_acs_gen_key(&gen, "pushChannel");
        ngx_acs_gen_map_open(&gen);
        ngx_acs_gen_pair(&gen, "endpoint", &op->dev.handle);
        ngx_acs_gen_pair(&gen, "p256dh", &op->dev.p256dh);
        ngx_acs_gen_pair(&gen, "auth", &op->dev.auth);
        ngx_acs_gen_map_close(&gen);

    } else {
        ngx_acs_gen_pair(&gen, "pushChannel", &op->dev.handle);
    }

    ngx_acs_gen_pair(&gen, "userId", &user);

    ngx_acs_gen_key(&gen, "tags");
    ngx_acs_gen_array_open(&gen);
    ngx_acs_gen_str(&gen, &tag);
    ngx_acs_gen_str(&gen, &dtag);
    ngx_acs_gen_array_close(&gen);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, &op->body);
}


static void
ngx_acs_install_answered(ngx_acs_http_t *h)
{
    ngx_acs_install_op_t  *op = h->data;

    ngx_acs_verdict_e  verdict;

    verdict = ngx_acs_hub_verdict(h);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, op->log, 0,
                   "acs_notify install: step %ui answered %l, curl %d, "
                   "verdict %d", (ngx_uint_t) op->step, h->status,
                   (int) h->result, (int) verdict);

    if (verdict == NGX_ACS_VERDICT_ABSENT) {

        switch (op->step) {

        case NGX_ACS_INSTALL_READ:

            /* none at this hub: the VoIP hub next, or there is none */

            if (ngx_acs_install_other(op, op->conf->hub)) {
                op->step = NGX_ACS_INSTALL_READ_VOIP;
                goto next;
            }

            /* fall through */

        case NGX_ACS_INSTALL_READ_VOIP:
            ngx_acs_install_finish(op, NGX_HTTP_NOT_FOUND, "NotFound",
                                   "no such device");
            return;

        case NGX_ACS_INSTALL_REMOVE:
            /* gone since it was read */
            ngx_acs_install_finish(op, NGX_HTTP_NO_CONTENT, NULL, NULL);
            return;

        case NGX_ACS_INSTALL_UNWRITE:
            /* the other hub's installation of a PUT: none, as it should */
            ngx_acs_install_finish(op, NGX_HTTP_OK, NULL, NULL);
            return;

        case NGX_ACS_INSTALL_WRITE:
            break;
        }
    }

    if (verdict != NGX_ACS_VERDICT_SENT) {
        ngx_acs_install_fail(op, verdict);
        return;
    }

    switch (op->step) {

    case NGX_ACS_INSTALL_WRITE:
        if (ngx_acs_install_other(op, op->at)) {
            op->step = NGX_ACS_INSTALL_UNWRITE;
            goto next;
        }

        ngx_acs_install_finish(op, NGX_HTTP_OK, NULL, NULL);
        return;

    case NGX_ACS_INSTALL_UNWRITE:
        ngx_acs_install_finish(op, NGX_HTTP_OK, NULL, NULL);
        return;

    case NGX_ACS_INSTALL_READ:
    case NGX_ACS_INSTALL_READ_VOIP:

        if (op->kind == NGX_ACS_INSTALL_DELETE) {
            op->step = NGX_ACS_INSTALL_REMOVE;
            goto next;
        }

        if (ngx_acs_install_read(op) != NGX_OK) {
            ngx_acs_install_finish(op, NGX_HTTP_BAD_GATEWAY,
                                   "BadHubAnswer", "Notification Hubs "
                                   "answered with an installation that "
                                   "cannot be read");
            return;
        }

        ngx_acs_install_finish(op, NGX_HTTP_OK, NULL, NULL);
        return;

    case NGX_ACS_INSTALL_REMOVE:
        ngx_acs_install_finish(op, NGX_HTTP_NO_CONTENT, NULL, NULL);
        return;
    }

next:

    if (ngx_acs_install_step(op) != NGX_OK) {
        ngx_acs_install_finish(op, NGX_HTTP_INTERNAL_SERVER_ERROR, NULL,
                               NULL);
    }
}


/*
 * An answer that is not the one hoped for, by the hub's verdict: 400 when
 * NH refused the installation itself, 503 when it may work later (with
 * the hub's Retry-After, else the module's default), 502 otherwise (this
 * nginx is not let in: rights, hub name), logged.
 */

static void
ngx_acs_install_fail(ngx_acs_install_op_t *op, ngx_acs_verdict_e verdict)
{
    u_char           why[CURL_ERROR_SIZE];
    ngx_str_t        detail;
    ngx_acs_http_t  *h;

    h = &op->http;

    ngx_acs_hub_detail(h, &detail);

    switch (verdict) {

    case NGX_ACS_VERDICT_THROTTLED:
    case NGX_ACS_VERDICT_FAILED:
    case NGX_ACS_VERDICT_UNREACHABLE:
        op->retry_after = h->retry_after;

        if (h->status < 200) {
            ngx_acs_hub_why(h, why, sizeof(why));

            ngx_log_error(NGX_LOG_ERR, op->log, 0,
                          "acs_notify_registry: no answer from Notification "
                          "Hubs \"%V\": %s", &op->at->name, why);

            ngx_acs_install_finish(op, NGX_HTTP_SERVICE_UNAVAILABLE,
                                   "HubUnavailable", "Notification Hubs did "
                                   "not answer, try again later");
            return;
        }

        ngx_log_error(NGX_LOG_WARN, op->log, 0,
                      "acs_notify_registry: Notification Hubs \"%V\" "
                      "answered %l to an installation request",
                      &op->at->name, h->status);

        ngx_acs_install_finish(op, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "HubUnavailable", "Notification Hubs is busy "
                               "or unavailable, try again later");
        return;

    case NGX_ACS_VERDICT_RENEW:
    case NGX_ACS_VERDICT_DENIED:
        ngx_log_error(NGX_LOG_ERR, op->log, 0,
                      "acs_notify_registry: Notification Hubs \"%V\" "
                      "answered %l to an installation request: the rule "
                      "\"%V\" of its connection string needs the Listen "
                      "right (and Send, for the pushes)", &op->at->name,
                      h->status, &op->at->key_name);

        ngx_acs_install_finish(op, NGX_HTTP_BAD_GATEWAY, "HubAccessDenied",
                               "Notification Hubs refused this server's "
                               "rule: it needs the Listen right");
        return;

    case NGX_ACS_VERDICT_REFUSED:
        if (op->step == NGX_ACS_INSTALL_WRITE) {
            ngx_log_error(NGX_LOG_INFO, op->log, 0,
                          "acs_notify_registry: Notification Hubs \"%V\" "
                          "refused the installation with %l: %V",
                          &op->at->name, h->status,
                          ngx_acs_log_str(op->pool, &detail));

            ngx_acs_install_finish(op, NGX_HTTP_BAD_REQUEST,
                                   "InvalidRegistration", "Notification "
                                   "Hubs refused the installation: %V",
                                   &detail);
            return;
        }

        break;

    case NGX_ACS_VERDICT_SENT:
    case NGX_ACS_VERDICT_GONE:
    case NGX_ACS_VERDICT_ABSENT:
        break;
    }

    ngx_log_error(NGX_LOG_ERR, op->log, 0,
                  "acs_notify_registry: Notification Hubs \"%V\" answered "
                  "%l to an installation request: %V", &op->at->name,
                  h->status, ngx_acs_log_str(op->pool, &detail));

    ngx_acs_install_finish(op, NGX_HTTP_BAD_GATEWAY, "BadHubAnswer",
                           "Notification Hubs answered %l", h->status);
}


static void
ngx_acs_install_finish(ngx_acs_install_op_t *op, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   *last, buf[512];
    va_list   args;

    op->status = status;
    op->code = code;
    ngx_str_null(&op->reason);

    if (fmt) {
        va_start(args, fmt);
        last = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
        va_end(args);

        op->reason.len = last - buf;
        op->reason.data = ngx_pnalloc(op->pool, op->reason.len);

        if (op->reason.data) {
            ngx_memcpy(op->reason.data, buf, op->reason.len);

        } else {
            op->reason.len = 0;
        }
    }

    op->done(op);
}


/* the device of an installation read: platform, handle, keys */

static ngx_int_t
ngx_acs_install_read(ngx_acs_install_op_t *op)
{
    size_t               i;
    ngx_str_t            json, name, s;
    yajl_val             tree, v, tags;
    ngx_uint_t           id, voip;
    ngx_acs_platform_t  *pf;

    json.data = op->http.response;
    json.len = op->http.response_len;

    tree = ngx_acs_json_tree(op->pool, &json);
    if (tree == NULL || !YAJL_IS_OBJECT(tree)) {
        return NGX_ERROR;
    }

    if (ngx_acs_json_tree_string(tree, "platform", &name) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_strlow(name.data, name.data, name.len);

    /*
     * The platform of that installation name; of two (APNs), the VoIP one
     * when "v:" is among its tags
     */

    voip = 0;
    tags = ngx_acs_json_tree_get(tree, "tags");

    for (i = 0; tags && YAJL_IS_ARRAY(tags) && i < tags->u.array.len; i++) {
        v = tags->u.array.values[i];

        if (YAJL_IS_STRING(v) && ngx_strncmp(v->u.string, "v:", 2) == 0) {
            voip = 1;
            break;
        }
    }

    id = 0;

    for (i = NGX_ACS_PLATFORM_APNS; i < NGX_ACS_PLATFORMS; i++) {
        pf = ngx_acs_platform(i);

        if (pf->installation.len != name.len
            || ngx_strncmp(pf->installation.data, name.data, name.len) != 0)
        {
            continue;
        }

        if (id == 0 || (pf->voip == NGX_ACS_VOIP_ONLY) == voip) {
            id = i;
        }
    }

    if (id == 0) {
        return NGX_ERROR;
    }

    pf = ngx_acs_platform(id);
    op->dev.platform = id;
    op->dev.expires = 0;

    v = ngx_acs_json_tree_get(tree, "pushChannel");
    if (v == NULL) {
        return NGX_ERROR;
    }

    if (pf->keys) {
        if (!YAJL_IS_OBJECT(v)
            || ngx_acs_json_tree_string(v, "endpoint", &op->dev.handle)
               != NGX_OK
            || ngx_acs_json_tree_string(v, "p256dh", &op->dev.p256dh)
               != NGX_OK
            || ngx_acs_json_tree_string(v, "auth", &op->dev.auth) != NGX_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (!YAJL_IS_STRING(v)) {
        return NGX_ERROR;
    }

    s.data = (u_char *) v->u.string;
    s.len = ngx_strlen(v->u.string);
    op->dev.handle = s;

    return NGX_OK;
}
