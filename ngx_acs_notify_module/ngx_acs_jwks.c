
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A key set comes from a file (jwks=PATH) or from an https URL
 * (jwks=https://...).  The file is read while the configuration is; the
 * URL is never fetched then (nginx -t needs no network), only by the
 * workers, and until a worker's first fetch succeeds it has no key set
 * (NGX_AGAIN: the webhook answers 503, Event Grid tries again) unless
 * jwks_cache= names a file holding the last good set.
 *
 * Every worker keeps its own copy, current by itself: at start (an https
 * set), then every jwks_refresh (default 1h) on a timer, and again on a
 * kid it does not know, at most every 10 seconds.  A file is read again
 * when its modification time changed; a URL is fetched with the module's
 * libcurl client on nginx's event loop, TLS verified against jwks_ca_file=
 * or the system store.  No worker waits for another or shares memory with
 * it: the cost is a fetch per worker per refresh, a few kilobytes.
 *
 * A fetch starts jwks_refresh after the previous good one started, not
 * ended: a key removed from the set is refused within jwks_refresh plus
 * the time of one fetch (at most NGX_ACS_JWKS_TIMEOUT), however slow the
 * previous one was, as long as the fetches succeed.
 *
 * A new set replaces the old one whole; a generation counter tells the
 * token cache (ngx_acs_auth.c) to check that the keys of its verdicts are
 * still there.  A failed refresh keeps the last good set, and is logged
 * once until a refresh succeeds again; the next try comes after 1 second,
 * doubling up to 5 minutes, never later than jwks_refresh.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/evp.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#else
#include <openssl/rsa.h>
#endif

#include "ngx_acs_conf.h"
#include "ngx_acs_json.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_jwks.h"


#define NGX_ACS_JWKS_MAX          (1024 * 1024)
#define NGX_ACS_JWKS_RECHECK      10           /* seconds */
#define NGX_ACS_JWKS_REFRESH      3600         /* seconds */
#define NGX_ACS_JWKS_REFRESH_MAX  (7 * 86400)  /* seconds */
#define NGX_ACS_JWKS_RETRY        1000         /* ms, doubling */
#define NGX_ACS_JWKS_RETRY_MAX    300000       /* ms */
#define NGX_ACS_JWKS_TIMEOUT      10000        /* ms, one fetch */
#define NGX_ACS_RSA_MIN_BITS      2048
#define NGX_ACS_RSA_MAX_BITS      8192
#define NGX_ACS_RSA_E_MAX         8            /* bytes of the exponent */
#define NGX_ACS_JWKS_KEYS_MAX     64


/* a key set, in a pool of its own, so that a new one replaces it whole */

typedef struct {
    ngx_pool_t                 *pool;
    ngx_array_t                 keys;       /* of ngx_acs_jwk_t */
    time_t                      mtime;      /* of its file */
    u_char                      id[32];     /* SHA-256 of the key ids */
} ngx_acs_keyset_t;


struct ngx_acs_jwks_s {
    ngx_str_t                   path;       /* a file, or "" */
    ngx_str_t                   url;        /* https://..., or "" */
    ngx_str_t                   ca_file;
    ngx_str_t                   cache;
    time_t                      refresh;

    ngx_acs_keyset_t           *set;        /* NULL: none yet */
    ngx_uint_t                  generation;
    time_t                      checked;    /* last look for a new set */

    /* each worker's own */
    ngx_log_t                  *log;
    ngx_event_t                 timer;
    ngx_connection_t            timer_conn;
    ngx_acs_http_t              http;
    ngx_msec_t                  retry;      /* after a failure, doubling */
    ngx_msec_t                  started;    /* the fetch running */
    ngx_uint_t                  busy;       /* unsigned:1, a fetch runs */
    ngx_uint_t                  failing;    /* unsigned:1, logged once */
};


static ngx_int_t ngx_acs_jwks_read(ngx_str_t *path, ngx_log_t *log,
    ngx_acs_keyset_t **set, char **err);
static ngx_int_t ngx_acs_jwks_parse(ngx_str_t *text, ngx_str_t *name,
    ngx_log_t *log, ngx_acs_keyset_t **set, char **err);
static EVP_PKEY *ngx_acs_jwk_rsa(ngx_pool_t *pool, ngx_str_t *n,
    ngx_str_t *e);
static ngx_int_t ngx_acs_jwk_id(ngx_str_t *kid, ngx_str_t *n, ngx_str_t *e,
    u_char *id);
static ngx_uint_t ngx_acs_jwks_take(ngx_acs_jwks_t *jwks,
    ngx_acs_keyset_t *set);
static void ngx_acs_jwks_free(void *data);
static void ngx_acs_jwks_cleanup(void *data);
static void ngx_acs_keyset_destroy(ngx_acs_keyset_t *set);
static void ngx_acs_jwks_reload(ngx_acs_jwks_t *jwks, time_t now,
    ngx_log_t *log);
static void ngx_acs_jwks_timer(ngx_event_t *ev);
static void ngx_acs_jwks_fetch(ngx_acs_jwks_t *jwks);
static void ngx_acs_jwks_fetched(ngx_acs_http_t *h);
static void ngx_acs_jwks_failed(ngx_acs_jwks_t *jwks, const char *fmt, ...);
static void ngx_acs_jwks_save(ngx_acs_jwks_t *jwks, ngx_str_t *text);


ngx_acs_jwks_t *
ngx_acs_jwks_create(ngx_conf_t *cf)
{
    ngx_acs_jwks_t  *jwks;

    jwks = ngx_pcalloc(cf->pool, sizeof(ngx_acs_jwks_t));
    if (jwks == NULL) {
        return NULL;
    }

    jwks->refresh = NGX_CONF_UNSET;

    return jwks;
}


ngx_int_t
ngx_acs_jwks_param(ngx_conf_t *cf, ngx_acs_jwks_t *jwks, ngx_str_t *arg)
{
    ngx_str_t  v;

    if (ngx_acs_conf_param(arg, "jwks=", &v)) {

        if (v.len > 8 && ngx_strncasecmp(v.data, (u_char *) "https://", 8)
                         == 0)
        {
            jwks->url = v;
            return NGX_OK;
        }

        if (v.len >= 7 && ngx_strncasecmp(v.data, (u_char *) "http://", 7)
                          == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_entra: jwks \"%V\" must be "
                               "https: signing keys are fetched with TLS "
                               "verified, or read from a file", &v);
            return NGX_ERROR;
        }

        jwks->path = v;

        return (ngx_conf_full_name(cf->cycle, &jwks->path, 1) == NGX_OK)
               ? NGX_OK : NGX_ERROR;
    }

    if (ngx_acs_conf_param(arg, "jwks_refresh=", &v)) {

        jwks->refresh = ngx_parse_time(&v, 1);

        if (jwks->refresh < 1 || jwks->refresh > NGX_ACS_JWKS_REFRESH_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_entra: invalid jwks_refresh "
                               "\"%V\", expected a time from 1s to 7d", &v);
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_acs_conf_param(arg, "jwks_ca_file=", &jwks->ca_file)) {
        return (ngx_conf_full_name(cf->cycle, &jwks->ca_file, 1) == NGX_OK)
               ? NGX_OK : NGX_ERROR;
    }

    if (ngx_acs_conf_param(arg, "jwks_cache=", &jwks->cache)) {
        return (ngx_conf_full_name(cf->cycle, &jwks->cache, 1) == NGX_OK)
               ? NGX_OK : NGX_ERROR;
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_acs_jwks_init_conf(ngx_conf_t *cf, ngx_acs_jwks_t *jwks)
{
    char                *err;
    ngx_file_info_t      fi;
    ngx_pool_cleanup_t  *cln;

    if (jwks->url.len == 0 && jwks->path.len == 0) {
        return NGX_DECLINED;
    }

    if (jwks->refresh == NGX_CONF_UNSET) {
        jwks->refresh = NGX_ACS_JWKS_REFRESH;
    }

    if (jwks->url.len == 0 && (jwks->ca_file.len || jwks->cache.len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra: jwks_ca_file= and jwks_cache= "
                           "go with an https:// jwks=");
        return NGX_ERROR;
    }

    if (jwks->ca_file.len
        && ngx_file_info(jwks->ca_file.data, &fi) == NGX_FILE_ERROR)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "acs_notify_entra: jwks_ca_file \"%V\"",
                           &jwks->ca_file);
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_acs_jwks_cleanup;
    cln->data = jwks;

    if (jwks->url.len) {

        /* the last good set, if there is one: a start needs no fetch */

        if (jwks->cache.len
            && ngx_file_info(jwks->cache.data, &fi) != NGX_FILE_ERROR
            && ngx_acs_jwks_read(&jwks->cache, cf->log, &jwks->set, &err)
               != NGX_OK)
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "acs_notify_entra: jwks_cache \"%V\" %s, "
                               "not used", &jwks->cache, err);
        }

        return NGX_OK;
    }

    if (ngx_acs_jwks_read(&jwks->path, cf->log, &jwks->set, &err)
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra: jwks \"%V\": %s",
                           &jwks->path, err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_uint_t
ngx_acs_jwks_remote(ngx_acs_jwks_t *jwks)
{
    return jwks->url.len != 0;
}


ngx_uint_t
ngx_acs_jwks_generation(ngx_acs_jwks_t *jwks)
{
    return jwks->generation;
}


ngx_uint_t
ngx_acs_jwks_has(ngx_acs_jwks_t *jwks, u_char *id)
{
    ngx_uint_t      i;
    ngx_acs_jwk_t  *k;

    if (jwks->set == NULL) {
        return 0;
    }

    k = jwks->set->keys.elts;

    for (i = 0; i < jwks->set->keys.nelts; i++) {
        if (ngx_memcmp(k[i].id, id, 32) == 0) {
            return 1;
        }
    }

    return 0;
}


ngx_int_t
ngx_acs_jwks_key(ngx_acs_jwks_t *jwks, ngx_str_t *kid, time_t now,
    ngx_log_t *log, ngx_acs_jwk_t **key)
{
    ngx_uint_t      i, again;
    ngx_acs_jwk_t  *k;

    for (again = 0; /* void */; again = 1) {

        if (jwks->set == NULL) {
            return NGX_AGAIN;
        }

        k = jwks->set->keys.elts;

        for (i = 0; i < jwks->set->keys.nelts; i++) {
            if (k[i].kid.len == kid->len
                && ngx_strncmp(k[i].kid.data, kid->data, kid->len) == 0)
            {
                *key = &k[i];
                return NGX_OK;
            }
        }

        if (again || now - jwks->checked < NGX_ACS_JWKS_RECHECK) {
            return NGX_DECLINED;
        }

        jwks->checked = now;

        if (jwks->url.len) {

            /* the token is refused; the fetch serves the next ones */

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                           "acs_notify: unknown kid, jwks \"%V\" fetched",
                           &jwks->url);

            if (!jwks->busy) {
                if (jwks->timer.timer_set) {
                    ngx_del_timer(&jwks->timer);
                }

                ngx_acs_jwks_fetch(jwks);
            }

            return NGX_DECLINED;
        }

        ngx_acs_jwks_reload(jwks, now, log);
    }
}


ngx_int_t
ngx_acs_jwks_init_process(ngx_acs_jwks_t *jwks, ngx_cycle_t *cycle)
{
    jwks->log = cycle->log;

    ngx_acs_worker_event(&jwks->timer, ngx_acs_jwks_timer, &jwks->timer_conn,
                         cycle->log);
    jwks->timer_conn.data = jwks;
    jwks->timer.cancelable = 1;

    ngx_add_timer(&jwks->timer, jwks->url.len ? 0 : jwks->refresh * 1000);

    return NGX_OK;
}


static void
ngx_acs_jwks_timer(ngx_event_t *ev)
{
    ngx_connection_t  *c;
    ngx_acs_jwks_t    *jwks;

    c = ev->data;
    jwks = c->data;

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (jwks->url.len) {
        ngx_acs_jwks_fetch(jwks);
        return;
    }

    jwks->checked = ngx_time();
    ngx_acs_jwks_reload(jwks, jwks->checked, ev->log);

    ngx_add_timer(ev, jwks->refresh * 1000);
}


/* a file: read again when its modification time changed */

static void
ngx_acs_jwks_reload(ngx_acs_jwks_t *jwks, time_t now, ngx_log_t *log)
{
    char              *err;
    ngx_file_info_t    fi;
    ngx_acs_keyset_t  *set;

    if (ngx_file_info(jwks->path.data, &fi) == NGX_FILE_ERROR
        || ngx_file_mtime(&fi) == jwks->set->mtime)
    {
        return;
    }

    /* the set outlives the request: the cycle's log, not its */

    if (ngx_acs_jwks_read(&jwks->path, ngx_cycle->log, &set, &err)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "acs_notify: jwks \"%V\" not reloaded: %s",
                      &jwks->path, err);
        return;
    }

    (void) ngx_acs_jwks_take(jwks, set);

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "acs_notify: jwks \"%V\" reloaded, %ui keys",
                  &jwks->path, set->keys.nelts);
}


static void
ngx_acs_jwks_fetch(ngx_acs_jwks_t *jwks)
{
    ngx_acs_http_t  *h;

    h = &jwks->http;

    h->response = ngx_alloc(NGX_ACS_JWKS_MAX, jwks->log);
    if (h->response == NULL) {
        ngx_acs_jwks_failed(jwks, "out of memory");
        return;
    }

    h->url = (char *) jwks->url.data;
    h->get = 1;
    h->response_size = NGX_ACS_JWKS_MAX;
    h->ca_file = jwks->ca_file.len ? (char *) jwks->ca_file.data : NULL;
    h->timeout = NGX_ACS_JWKS_TIMEOUT;
    h->handler = ngx_acs_jwks_fetched;
    h->data = jwks;

    jwks->busy = 1;
    jwks->checked = ngx_time();
    jwks->started = ngx_current_msec;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, jwks->log, 0,
                   "acs_notify: jwks \"%V\" fetch", &jwks->url);

    if (ngx_acs_curl_submit(h, jwks->log) != NGX_OK) {
        ngx_free(h->response);
        h->response = NULL;
        jwks->busy = 0;

        ngx_acs_jwks_failed(jwks, "the request could not be started");
    }
}


static void
ngx_acs_jwks_fetched(ngx_acs_http_t *h)
{
    ngx_acs_jwks_t  *jwks = h->data;

    char              *err;
    ngx_str_t          text;
    ngx_msec_t         took, refresh;
    ngx_uint_t         changed, recovered;
    ngx_acs_keyset_t  *set;

    jwks->busy = 0;

    text.data = h->response;
    text.len = h->response_len;

    if (h->result == CURLE_WRITE_ERROR) {
        ngx_acs_jwks_failed(jwks, "the key set is over 1m");
        goto done;
    }

    if (h->result != CURLE_OK) {
        ngx_acs_jwks_failed(jwks, "%s", h->error[0]
                                        ? h->error
                                        : curl_easy_strerror(h->result));
        goto done;
    }

    if (h->status != 200) {
        ngx_acs_jwks_failed(jwks, "HTTP %l", h->status);
        goto done;
    }

    if (ngx_acs_jwks_parse(&text, &jwks->url, jwks->log, &set, &err)
        != NGX_OK)
    {
        ngx_acs_jwks_failed(jwks, "%s", err);
        goto done;
    }

    recovered = jwks->failing;
    jwks->failing = 0;
    jwks->retry = 0;

    changed = ngx_acs_jwks_take(jwks, set);

    if (changed || recovered) {
        ngx_log_error(NGX_LOG_NOTICE, jwks->log, 0,
                      "acs_notify: jwks \"%V\" fetched, %ui keys%s",
                      &jwks->url, jwks->set->keys.nelts,
                      changed ? "" : ", unchanged");
    }

    if (changed && jwks->cache.len) {
        ngx_acs_jwks_save(jwks, &text);
    }

    /* the next fetch jwks_refresh after this one started */

    took = ngx_current_msec - jwks->started;
    refresh = (ngx_msec_t) jwks->refresh * 1000;
    refresh = (refresh > took) ? refresh - took : 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, jwks->log, 0,
                   "acs_notify: jwks \"%V\" fetched in %Mms, next in %Mms",
                   &jwks->url, took, refresh);

    if (!ngx_exiting) {
        ngx_add_timer(&jwks->timer, refresh);
    }

done:

    ngx_free(h->response);
    h->response = NULL;
}


/*
 * The last good set stays; the failure is logged once, until a fetch
 * succeeds again; the next try is soon, then less and less often.
 */

static void
ngx_acs_jwks_failed(ngx_acs_jwks_t *jwks, const char *fmt, ...)
{
    u_char      *last, why[NGX_MAX_ERROR_STR];
    va_list      args;
    ngx_msec_t   delay;

    if (!jwks->failing) {
        jwks->failing = 1;

        va_start(args, fmt);
        last = ngx_vslprintf(why, why + sizeof(why), fmt, args);
        va_end(args);

        if (jwks->set) {
            ngx_log_error(NGX_LOG_ERR, jwks->log, 0,
                          "acs_notify: jwks \"%V\" not fetched: %*s; the "
                          "%ui keys of the last good set stay in use",
                          &jwks->url, last - why, why,
                          jwks->set->keys.nelts);

        } else {
            ngx_log_error(NGX_LOG_ERR, jwks->log, 0,
                          "acs_notify: jwks \"%V\" not fetched: %*s; "
                          "tokens are answered 503 until it is",
                          &jwks->url, last - why, why);
        }
    }

    jwks->retry = jwks->retry ? ngx_min(2 * jwks->retry,
                                        NGX_ACS_JWKS_RETRY_MAX)
                              : NGX_ACS_JWKS_RETRY;

    delay = ngx_min(jwks->retry, (ngx_msec_t) jwks->refresh * 1000);

    if (!ngx_exiting && !jwks->timer.timer_set) {
        ngx_add_timer(&jwks->timer, delay);
    }
}


/* the body of a good fetch, for the next start: a new file, renamed */

static void
ngx_acs_jwks_save(ngx_acs_jwks_t *jwks, ngx_str_t *text)
{
    u_char    *tmp;
    ssize_t    n;
    ngx_fd_t   fd;

    tmp = ngx_alloc(jwks->cache.len + sizeof(".4294967295.tmp"),
                    jwks->log);
    if (tmp == NULL) {
        return;
    }

    ngx_sprintf(tmp, "%V.%P.tmp%Z", &jwks->cache, ngx_pid);

    fd = ngx_open_file(tmp, NGX_FILE_WRONLY, NGX_FILE_TRUNCATE,
                       NGX_FILE_DEFAULT_ACCESS);
    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, jwks->log, ngx_errno,
                      "acs_notify: jwks_cache: " ngx_open_file_n " \"%s\" "
                      "failed", tmp);
        ngx_free(tmp);
        return;
    }

    n = ngx_write_fd(fd, text->data, text->len);

    if (ngx_close_file(fd) == NGX_FILE_ERROR || n != (ssize_t) text->len
        || ngx_rename_file(tmp, jwks->cache.data) == NGX_FILE_ERROR)
    {
        ngx_log_error(NGX_LOG_ERR, jwks->log, ngx_errno,
                      "acs_notify: jwks_cache \"%V\" not written",
                      &jwks->cache);
        (void) ngx_delete_file(tmp);
    }

    ngx_free(tmp);
}


/*
 * Makes set the current one, unless it holds the same keys: 1 when it
 * did.  The generation tells cached verdicts to look for their keys.
 */

static ngx_uint_t
ngx_acs_jwks_take(ngx_acs_jwks_t *jwks, ngx_acs_keyset_t *set)
{
    if (jwks->set && ngx_memcmp(jwks->set->id, set->id, 32) == 0) {
        jwks->set->mtime = set->mtime;
        ngx_acs_keyset_destroy(set);
        return 0;
    }

    if (jwks->set) {
        ngx_acs_keyset_destroy(jwks->set);
    }

    jwks->set = set;
    jwks->generation++;

    return 1;
}


static ngx_int_t
ngx_acs_jwks_read(ngx_str_t *path, ngx_log_t *log, ngx_acs_keyset_t **set,
    char **err)
{
    ssize_t           n;
    ngx_str_t         text;
    ngx_int_t         rc;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *path;
    file.log = log;

    file.fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        *err = "cannot be opened";
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_ACS_JWKS_MAX)
    {
        ngx_close_file(file.fd);
        *err = "cannot be read or is over 1m";
        return NGX_ERROR;
    }

    text.len = ngx_file_size(&fi);
    text.data = ngx_alloc(text.len + 1, log);
    if (text.data == NULL) {
        ngx_close_file(file.fd);
        *err = "out of memory";
        return NGX_ERROR;
    }

    n = ngx_read_file(&file, text.data, text.len, 0);
    ngx_close_file(file.fd);

    if (n != (ssize_t) text.len) {
        ngx_free(text.data);
        *err = "cannot be read";
        return NGX_ERROR;
    }

    rc = ngx_acs_jwks_parse(&text, path, log, set, err);

    ngx_free(text.data);

    if (rc == NGX_OK) {
        (*set)->mtime = ngx_file_mtime(&fi);
    }

    return rc;
}


/*
 * Only RSA signing keys of 2048 to 8192 bits are kept; others are
 * skipped.  A set of more than 64 keys, or JSON that ngx_acs_json_check()
 * refuses, is refused whole.  The JSON tree lives in a pool of its own,
 * freed at once.
 */

static ngx_int_t
ngx_acs_jwks_parse(ngx_str_t *text, ngx_str_t *name, ngx_log_t *log,
    ngx_acs_keyset_t **set, char **err)
{
    size_t               i;
    u_char              *p;
    yajl_val             tree, keys, k;
    ngx_str_t            kty, kid, use, nn, ee;
    ngx_pool_t          *pool, *tmp;
    ngx_acs_jwk_t       *jwk;
    ngx_acs_keyset_t    *ks;
    ngx_pool_cleanup_t  *cln;

    *err = "out of memory";

    pool = ngx_create_pool(4096, log);
    tmp = ngx_create_pool(4096, log);
    if (pool == NULL || tmp == NULL) {
        goto failed;
    }

    ks = ngx_pcalloc(pool, sizeof(ngx_acs_keyset_t));
    if (ks == NULL
        || ngx_array_init(&ks->keys, pool, 4, sizeof(ngx_acs_jwk_t)) != NGX_OK)
    {
        goto failed;
    }

    ks->pool = pool;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_acs_jwks_free;
    cln->data = ks;

    *err = ngx_acs_json_check(text);
    if (*err) {
        goto failed;
    }

    tree = ngx_acs_json_tree(tmp, text);
    keys = ngx_acs_json_tree_get(tree, "keys");

    if (keys == NULL || !YAJL_IS_ARRAY(keys)) {
        *err = "is not a JSON Web Key Set (no \"keys\" array)";
        goto failed;
    }

    if (keys->u.array.len > NGX_ACS_JWKS_KEYS_MAX) {
        *err = "holds more keys than the 64 a set may have";
        goto failed;
    }

    for (i = 0; i < keys->u.array.len; i++) {
        k = keys->u.array.values[i];

        if (ngx_acs_json_tree_string(k, "kty", &kty) != NGX_OK
            || ngx_acs_json_tree_string(k, "kid", &kid) != NGX_OK)
        {
            continue;
        }

        if (kty.len != 3 || ngx_strncmp(kty.data, "RSA", 3) != 0) {
            continue;
        }

        if (ngx_acs_json_tree_string(k, "use", &use) == NGX_OK
            && (use.len != 3 || ngx_strncmp(use.data, "sig", 3) != 0))
        {
            continue;
        }

        if (ngx_acs_json_tree_string(k, "n", &nn) != NGX_OK
            || ngx_acs_json_tree_string(k, "e", &ee) != NGX_OK)
        {
            continue;
        }

        jwk = ngx_array_push(&ks->keys);
        if (jwk == NULL) {
            goto failed;
        }

        jwk->pkey = ngx_acs_jwk_rsa(tmp, &nn, &ee);

        if (jwk->pkey == NULL) {
            ks->keys.nelts--;
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "acs_notify: jwks \"%V\": key \"%V\" skipped: "
                          "not a valid RSA key of %d to %d bits",
                          name, ngx_acs_log_str(tmp, &kid),
                          NGX_ACS_RSA_MIN_BITS, NGX_ACS_RSA_MAX_BITS);
            continue;
        }

        jwk->kid.data = ngx_pstrdup(pool, &kid);
        jwk->kid.len = kid.len;

        if (jwk->kid.data == NULL
            || ngx_acs_jwk_id(&kid, &nn, &ee, jwk->id) != NGX_OK)
        {
            goto failed;
        }
    }

    if (ks->keys.nelts == 0) {
        *err = "has no usable RSA signing key";
        goto failed;
    }

    /* the set's id: of its keys' ids, in their order */

    p = ngx_pnalloc(tmp, 32 * ks->keys.nelts);
    if (p == NULL) {
        goto failed;
    }

    jwk = ks->keys.elts;

    for (i = 0; i < ks->keys.nelts; i++) {
        ngx_memcpy(p + 32 * i, jwk[i].id, 32);
    }

    if (EVP_Digest(p, 32 * ks->keys.nelts, ks->id, NULL, EVP_sha256(), NULL)
        != 1)
    {
        *err = "cannot be digested";
        goto failed;
    }

    ngx_destroy_pool(tmp);

    *set = ks;

    return NGX_OK;

failed:

    if (tmp) {
        ngx_destroy_pool(tmp);
    }

    if (pool) {
        ngx_destroy_pool(pool);
    }

    return NGX_ERROR;
}


/* which key: the same kid with another modulus is another key */

static ngx_int_t
ngx_acs_jwk_id(ngx_str_t *kid, ngx_str_t *n, ngx_str_t *e, u_char *id)
{
    int          ok;
    EVP_MD_CTX  *md;

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1
         && EVP_DigestUpdate(md, kid->data, kid->len) == 1
         && EVP_DigestUpdate(md, "\0", 1) == 1
         && EVP_DigestUpdate(md, n->data, n->len) == 1
         && EVP_DigestUpdate(md, "\0", 1) == 1
         && EVP_DigestUpdate(md, e->data, e->len) == 1
         && EVP_DigestFinal_ex(md, id, NULL) == 1;

    EVP_MD_CTX_free(md);

    return ok ? NGX_OK : NGX_ERROR;
}


static EVP_PKEY *
ngx_acs_jwk_rsa(ngx_pool_t *pool, ngx_str_t *n, ngx_str_t *e)
{
    BIGNUM        *bn, *be;
    EVP_PKEY      *pkey;
    ngx_str_t      dn, de;
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;
    OSSL_PARAM_BLD *bld;
#else
    RSA           *rsa;
#endif

    if (ngx_acs_base64url_decode(pool, n, &dn) != NGX_OK
        || ngx_acs_base64url_decode(pool, e, &de) != NGX_OK
        || dn.len == 0 || de.len == 0)
    {
        return NULL;
    }

    bn = BN_bin2bn(dn.data, dn.len, NULL);
    be = BN_bin2bn(de.data, de.len, NULL);
    pkey = NULL;

    if (bn == NULL || be == NULL
        || BN_num_bits(bn) < NGX_ACS_RSA_MIN_BITS
        || BN_num_bits(bn) > NGX_ACS_RSA_MAX_BITS
        || de.len > NGX_ACS_RSA_E_MAX)
    {
        goto done;
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

    bld = OSSL_PARAM_BLD_new();
    params = NULL;
    ctx = NULL;

    if (bld != NULL
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1
        && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL
        && (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL
        && EVP_PKEY_fromdata_init(ctx) == 1)
    {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            pkey = NULL;
        }
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

#else

    rsa = RSA_new();
    if (rsa == NULL) {
        goto done;
    }

    if (RSA_set0_key(rsa, bn, be, NULL) != 1) {
        RSA_free(rsa);
        goto done;
    }

    bn = NULL;
    be = NULL;

    pkey = EVP_PKEY_new();
    if (pkey == NULL || EVP_PKEY_assign_RSA(pkey, rsa) != 1) {
        EVP_PKEY_free(pkey);
        RSA_free(rsa);
        pkey = NULL;
    }

#endif

done:

    if (pkey == NULL) {
        ERR_clear_error();
    }

    BN_free(bn);
    BN_free(be);

    return pkey;
}


static void
ngx_acs_jwks_free(void *data)
{
    ngx_acs_keyset_t  *ks = data;

    ngx_uint_t      i;
    ngx_acs_jwk_t  *k;

    k = ks->keys.elts;

    for (i = 0; i < ks->keys.nelts; i++) {
        EVP_PKEY_free(k[i].pkey);
    }
}


static void
ngx_acs_jwks_cleanup(void *data)
{
    ngx_acs_jwks_t  *jwks = data;

    if (jwks->set) {
        ngx_acs_keyset_destroy(jwks->set);
        jwks->set = NULL;
    }
}


/*
 * A key set's pool may have been made with a log that is gone by now (a
 * configuration's or a request's): it is destroyed with the current one.
 */

static void
ngx_acs_keyset_destroy(ngx_acs_keyset_t *set)
{
    set->pool->log = ngx_cycle->log;
    ngx_destroy_pool(set->pool);
}
