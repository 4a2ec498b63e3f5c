
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The trace: a ring of fixed-size entries in a shared zone (the limit_req
 * way: ngx_shared_memory_add, a slab pool, its mutex, the old cycle's zone
 * kept on reload), filled once when the zone is made, so that its memory
 * never grows: the newest entry takes the place of the oldest.  Each entry
 * is on two chains, by a hash of its user and of its event (a bucket head
 * array for each, entries linked by index both ways), so that
 *
 *   writing   is constant work under the lock: the oldest entry leaves
 *             its two chains, the new one is copied in (prepared before
 *             the lock is taken) and heads both;
 *   a query   walks one chain, newest first, and copies what matches out
 *             of the lock before it writes its JSON.
 *
 * Strings are cut to the entry's sizes on a UTF-8 character boundary;
 * what the hub sent (TrackingId ...) keeps printable ASCII only.  Phone
 * numbers ("4:+...", and the tags made of them) are masked but their last
 * 4 digits before they are written: the zone never holds one whole.  An
 * entry is matched by a 64-bit hash of the whole id and its text as kept.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_http.h"
#include "ngx_acs_notify.h"
#include "ngx_acs_json.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_trace.h"


#define NGX_ACS_TRACE_EVENT_LEN    64
#define NGX_ACS_TRACE_TYPE_LEN     48
#define NGX_ACS_TRACE_USER_LEN     128
#define NGX_ACS_TRACE_TARGET_LEN   128     /* a device id or a tag */
#define NGX_ACS_TRACE_HANDLE_LEN   8
#define NGX_ACS_TRACE_HUB_LEN      32
#define NGX_ACS_TRACE_NH_LEN       48      /* an id the hub answered */

#define NGX_ACS_TRACE_MIN          16      /* entries, at least */
#define NGX_ACS_TRACE_ANSWER_MAX   500     /* entries in one answer */
#define NGX_ACS_TRACE_QUERY_MAX    1024    /* bytes of a decoded value */

#define NGX_ACS_TRACE_USED         0x01
#define NGX_ACS_TRACE_TAG          0x02

#define NGX_ACS_TRACE_BY_USER      0
#define NGX_ACS_TRACE_BY_EVENT     1


typedef struct {
    uint32_t                    next[2];     /* by user, by event: index +
                                                1, 0 for none */
    uint32_t                    prev[2];
    uint64_t                    key[2];
    int64_t                     time;        /* ms since the epoch */
    uint32_t                    age;         /* ms; UINT32_MAX: not known */
    uint32_t                    queued;
    uint32_t                    hub_time;
    uint16_t                    status;
    uint16_t                    attempts;
    u_char                      outcome;
    u_char                      platform;
    u_char                      flags;

    u_char                      event_len;
    u_char                      type_len;
    u_char                      user_len;
    u_char                      target_len;
    u_char                      handle_len;
    u_char                      hub_len;
    u_char                      tracking_len;
    u_char                      correlation_len;
    u_char                      notification_len;

    u_char                      event[NGX_ACS_TRACE_EVENT_LEN];
    u_char                      type[NGX_ACS_TRACE_TYPE_LEN];
    u_char                      user[NGX_ACS_TRACE_USER_LEN];
    u_char                      target[NGX_ACS_TRACE_TARGET_LEN];
    u_char                      handle[NGX_ACS_TRACE_HANDLE_LEN];
    u_char                      hub[NGX_ACS_TRACE_HUB_LEN];
    u_char                      tracking[NGX_ACS_TRACE_NH_LEN];
    u_char                      correlation[NGX_ACS_TRACE_NH_LEN];
    u_char                      notification[NGX_ACS_TRACE_NH_LEN];
} ngx_acs_trace_entry_t;


typedef struct {
    ngx_acs_trace_entry_t      *entries;
    uint32_t                   *heads[2];    /* index + 1, 0 for none */
    ngx_uint_t                  n;           /* entries */
    ngx_uint_t                  mask;        /* buckets - 1 */
    ngx_uint_t                  next;        /* the entry written next */
    ngx_atomic_t                written;
} ngx_acs_trace_sh_t;


struct ngx_acs_trace_s {
    ngx_acs_trace_sh_t         *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *zone;
};


static ngx_int_t ngx_acs_trace_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static uint64_t ngx_acs_trace_key(ngx_str_t *s);
static u_char ngx_acs_trace_text(u_char *dst, ngx_str_t *src, size_t max);
static u_char ngx_acs_trace_ascii(u_char *dst, ngx_str_t *src, size_t max);
static void ngx_acs_trace_mask(u_char *s, size_t len);
static void ngx_acs_trace_link(ngx_acs_trace_sh_t *sh, ngx_uint_t i,
    ngx_uint_t k);
static void ngx_acs_trace_unlink(ngx_acs_trace_sh_t *sh, ngx_uint_t i,
    ngx_uint_t k);
static ngx_int_t ngx_acs_trace_decode(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
static ngx_int_t ngx_acs_trace_refuse(ngx_http_request_t *r,
    ngx_uint_t status, const char *code, const char *reason);
static ngx_array_t *ngx_acs_trace_find(ngx_pool_t *pool, ngx_uint_t k,
    ngx_str_t *id);
static void ngx_acs_trace_json(ngx_acs_gen_t *gen,
    ngx_acs_trace_entry_t *en);
static void ngx_acs_trace_pair(ngx_acs_gen_t *gen, char *key, u_char *data,
    size_t len);


static ngx_str_t  ngx_acs_trace_outcomes[] = {
    [NGX_ACS_TRACE_SENT] = ngx_string("sent"),
    [NGX_ACS_TRACE_GONE] = ngx_string("gone"),
    [NGX_ACS_TRACE_REJECTED] = ngx_string("rejected"),
    [NGX_ACS_TRACE_FAILED] = ngx_string("failed"),
    [NGX_ACS_TRACE_DROPPED] = ngx_string("dropped"),
    [NGX_ACS_TRACE_SKIPPED] = ngx_string("skipped"),
    [NGX_ACS_TRACE_EXPIRED] = ngx_string("expired"),
    [NGX_ACS_TRACE_STALE] = ngx_string("stale"),
    [NGX_ACS_TRACE_DUPLICATE] = ngx_string("duplicate")
};

/* a name for every outcome, or this does not compile */
typedef char  ngx_acs_trace_outcomes_named[
    (sizeof(ngx_acs_trace_outcomes) / sizeof(ngx_str_t)
     == NGX_ACS_TRACE_OUTCOMES) ? 1 : -1];


static ngx_acs_trace_t  *ngx_acs_trace;


char *
ngx_acs_trace_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t n,
    ngx_acs_trace_t **trace)
{
    u_char           *p;
    ssize_t           size;
    ngx_str_t         zone, name, s;
    ngx_acs_trace_t  *t;

    if (*trace) {
        return "is duplicate";
    }

    if (n != 1 || !(args[0].len > 5
                    && ngx_strncmp(args[0].data, "zone=", 5) == 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_trace takes zone=NAME:SIZE");
        return NGX_CONF_ERROR;
    }

    zone.data = args[0].data + 5;
    zone.len = args[0].len - 5;

    p = ngx_strlchr(zone.data, zone.data + zone.len, ':');

    if (p == NULL || p == zone.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_trace: \"%V\" is not NAME:SIZE",
                           &zone);
        return NGX_CONF_ERROR;
    }

    name.data = zone.data;
    name.len = p - zone.data;

    s.data = p + 1;
    s.len = zone.data + zone.len - s.data;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR || size < (ssize_t) (16 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_trace: zone \"%V\" needs a size of "
                           "at least %uzk, \"%V\" is not one",
                           &name, 16 * ngx_pagesize / 1024, &s);
        return NGX_CONF_ERROR;
    }

    t = ngx_pcalloc(cf->pool, sizeof(ngx_acs_trace_t));
    if (t == NULL) {
        return NGX_CONF_ERROR;
    }

    t->zone = ngx_shared_memory_add(cf, &name, size,
                                    &ngx_http_acs_notify_module);
    if (t->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (t->zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_trace: zone \"%V\" is already used",
                           &name);
        return NGX_CONF_ERROR;
    }

    t->zone->init = ngx_acs_trace_init_zone;
    t->zone->data = t;

    *trace = t;

    return NGX_CONF_OK;
}


/*
 * The zone is the ring: its header, the two bucket arrays (a bucket for
 * every two entries, a power of two) and the entries, in the pages left
 * once the header is allocated.
 */

static ngx_int_t
ngx_acs_trace_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_acs_trace_t  *ot = data;

    u_char              *mem;
    size_t               bytes, len;
    ngx_uint_t           pages, n, buckets;
    ngx_acs_trace_t     *t;
    ngx_acs_trace_sh_t  *sh;

    t = shm_zone->data;

    if (ot) {
        /* a reload: the journal goes on */
        t->sh = ot->sh;
        t->shpool = ot->shpool;
        return NGX_OK;
    }

    t->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        t->sh = t->shpool->data;
        return NGX_OK;
    }

    len = sizeof(" in acs_notify_trace zone \"\"") + shm_zone->shm.name.len;

    t->shpool->log_ctx = ngx_slab_alloc(t->shpool, len);
    if (t->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(t->shpool->log_ctx, " in acs_notify_trace zone \"%V\"%Z",
                &shm_zone->shm.name);

    sh = ngx_slab_calloc(t->shpool, sizeof(ngx_acs_trace_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    /* every page left, taken once: the ring never asks for more */

    t->shpool->log_nomem = 0;

    for (pages = t->shpool->pfree; pages; pages--) {
        mem = ngx_slab_alloc(t->shpool, pages << ngx_pagesize_shift);
        if (mem) {
            break;
        }
    }

    if (pages == 0) {
        return NGX_ERROR;
    }

    bytes = pages << ngx_pagesize_shift;

    n = bytes / sizeof(ngx_acs_trace_entry_t);

    for (buckets = 1; buckets * 4 <= n; buckets <<= 1) { /* void */ }

    n = (bytes - 2 * buckets * sizeof(uint32_t))
        / sizeof(ngx_acs_trace_entry_t);

    if (n < NGX_ACS_TRACE_MIN) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "acs_notify_trace zone \"%V\" is too small",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    ngx_memzero(mem, bytes);

    sh->heads[NGX_ACS_TRACE_BY_USER] = (uint32_t *) mem;
    sh->heads[NGX_ACS_TRACE_BY_EVENT] = (uint32_t *) mem + buckets;
    sh->entries = (ngx_acs_trace_entry_t *) (mem
                                             + 2 * buckets
                                               * sizeof(uint32_t));
    sh->n = n;
    sh->mask = buckets - 1;

    t->sh = sh;
    t->shpool->data = sh;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, shm_zone->shm.log, 0,
                   "acs_notify_trace zone \"%V\": %ui entries of %uz bytes",
                   &shm_zone->shm.name, n, sizeof(ngx_acs_trace_entry_t));

    return NGX_OK;
}


void
ngx_acs_trace_init_process(ngx_acs_trace_t *trace)
{
    ngx_acs_trace = trace;
}


ngx_uint_t
ngx_acs_trace_on(void)
{
    return (ngx_acs_trace != NULL);
}


void
ngx_acs_trace_add(ngx_acs_trace_push_t *tp)
{
    u_char                 *s;
    ngx_str_t               type;
    ngx_uint_t              i;
    ngx_time_t             *tv;
    ngx_acs_trace_sh_t     *sh;
    ngx_acs_trace_entry_t  *en, e;

    if (ngx_acs_trace == NULL) {
        return;
    }

    /* the entry is made outside the lock */

    ngx_memzero(&e, offsetof(ngx_acs_trace_entry_t, event));

    tv = ngx_timeofday();

    e.key[NGX_ACS_TRACE_BY_USER] = ngx_acs_trace_key(&tp->user);
    e.key[NGX_ACS_TRACE_BY_EVENT] = ngx_acs_trace_key(&tp->event_id);
    e.time = (int64_t) tv->sec * 1000 + tv->msec;
    e.age = (tp->age == NGX_ACS_TRACE_NONE)
            ? UINT32_MAX : (uint32_t) ngx_min(tp->age, UINT32_MAX - 1);
    e.queued = (uint32_t) ngx_min(tp->queued, UINT32_MAX);
    e.hub_time = (uint32_t) ngx_min(tp->hub_time, UINT32_MAX);
    e.status = (uint16_t) tp->status;
    e.attempts = (uint16_t) ngx_min(tp->attempts, 0xffff);
    e.outcome = (u_char) tp->outcome;
    e.platform = (u_char) tp->platform;
    e.flags = NGX_ACS_TRACE_USED
              | ((tp->target == NGX_ACS_TARGET_TAG) ? NGX_ACS_TRACE_TAG : 0);

    e.event_len = ngx_acs_trace_text(e.event, &tp->event_id,
                                     NGX_ACS_TRACE_EVENT_LEN);
    /* "Microsoft.Communication.IncomingCall": "IncomingCall" */

    for (s = tp->type.data + tp->type.len; s > tp->type.data; s--) {
        if (s[-1] == '.') {
            break;
        }
    }

    type.data = s;
    type.len = tp->type.data + tp->type.len - s;

    e.type_len = ngx_acs_trace_text(e.type, &type, NGX_ACS_TRACE_TYPE_LEN);
    e.user_len = ngx_acs_trace_text(e.user, &tp->user,
                                    NGX_ACS_TRACE_USER_LEN);
    ngx_acs_trace_mask(e.user, e.user_len);

    if (tp->target == NGX_ACS_TARGET_TAG) {
        e.target_len = ngx_acs_trace_text(e.target, &tp->handle,
                                          NGX_ACS_TRACE_TARGET_LEN);
        ngx_acs_trace_mask(e.target, e.target_len);

    } else {
        e.target_len = ngx_acs_trace_text(e.target, &tp->device,
                                          NGX_ACS_TRACE_TARGET_LEN);
        e.handle_len = ngx_acs_trace_ascii(e.handle, &tp->handle,
                                           NGX_ACS_TRACE_HANDLE_LEN);
    }

    e.hub_len = ngx_acs_trace_text(e.hub, &tp->hub, NGX_ACS_TRACE_HUB_LEN);
    e.tracking_len = ngx_acs_trace_ascii(e.tracking, &tp->tracking_id,
                                         NGX_ACS_TRACE_NH_LEN);
    e.correlation_len = ngx_acs_trace_ascii(e.correlation,
                                            &tp->correlation_id,
                                            NGX_ACS_TRACE_NH_LEN);
    e.notification_len = ngx_acs_trace_ascii(e.notification,
                                             &tp->notification_id,
                                             NGX_ACS_TRACE_NH_LEN);

    sh = ngx_acs_trace->sh;

    ngx_shmtx_lock(&ngx_acs_trace->shpool->mutex);

    i = sh->next;
    sh->next = (i + 1 == sh->n) ? 0 : i + 1;

    en = &sh->entries[i];

    if (en->flags & NGX_ACS_TRACE_USED) {
        /* the oldest entry goes */
        ngx_acs_trace_unlink(sh, i, NGX_ACS_TRACE_BY_USER);
        ngx_acs_trace_unlink(sh, i, NGX_ACS_TRACE_BY_EVENT);
    }

    ngx_memcpy(en, &e, sizeof(ngx_acs_trace_entry_t));

    ngx_acs_trace_link(sh, i, NGX_ACS_TRACE_BY_USER);
    ngx_acs_trace_link(sh, i, NGX_ACS_TRACE_BY_EVENT);

    sh->written++;

    ngx_shmtx_unlock(&ngx_acs_trace->shpool->mutex);
}


/* 64 bits of two hashes of the whole id, as the engine keys handles */

static uint64_t
ngx_acs_trace_key(ngx_str_t *s)
{
    return ((uint64_t) ngx_murmur_hash2(s->data, s->len) << 32)
           | ngx_crc32_short(s->data, s->len);
}


/* at most max bytes of src, cut on a UTF-8 character boundary */

static u_char
ngx_acs_trace_text(u_char *dst, ngx_str_t *src, size_t max)
{
    size_t  len;

    len = src->len;

    if (len > max) {
        len = max;

        while (len && (src->data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    ngx_memcpy(dst, src->data, len);

    return (u_char) len;
}


/* at most max bytes of src, printable ASCII, anything else as "?" */

static u_char
ngx_acs_trace_ascii(u_char *dst, ngx_str_t *src, size_t max)
{
    size_t  i, len;

    len = ngx_min(src->len, max);

    for (i = 0; i < len; i++) {
        dst[i] = (src->data[i] > 0x20 && src->data[i] < 0x7f)
                 ? src->data[i] : '?';
    }

    return (u_char) len;
}


/*
 * A phone number's raw id ("4:+14255550123") or a tag made of one
 * ("u:4:#2b14255550123"): every digit after the "4:" but the last 4
 * becomes "*".
 */

static void
ngx_acs_trace_mask(u_char *s, size_t len)
{
    size_t  i, from, digits;

    if (len > 2 && s[0] == '4' && s[1] == ':') {
        from = 2;

    } else if (len > 4 && (s[0] == 'u' || s[0] == 'v') && s[1] == ':'
               && s[2] == '4' && s[3] == ':')
    {
        from = 4;

    } else {
        return;
    }

    digits = 0;

    for (i = from; i < len; i++) {
        digits += (s[i] >= '0' && s[i] <= '9');
    }

    for (i = from; i < len && digits > 4; i++) {
        if (s[i] >= '0' && s[i] <= '9') {
            s[i] = '*';
            digits--;
        }
    }
}


static void
ngx_acs_trace_link(ngx_acs_trace_sh_t *sh, ngx_uint_t i, ngx_uint_t k)
{
    uint32_t               *head;
    ngx_acs_trace_entry_t  *en;

    en = &sh->entries[i];
    head = &sh->heads[k][en->key[k] & sh->mask];

    en->prev[k] = 0;
    en->next[k] = *head;

    if (*head) {
        sh->entries[*head - 1].prev[k] = (uint32_t) (i + 1);
    }

    *head = (uint32_t) (i + 1);
}


static void
ngx_acs_trace_unlink(ngx_acs_trace_sh_t *sh, ngx_uint_t i, ngx_uint_t k)
{
    ngx_acs_trace_entry_t  *en;

    en = &sh->entries[i];

    if (en->prev[k]) {
        sh->entries[en->prev[k] - 1].next[k] = en->next[k];

    } else {
        sh->heads[k][en->key[k] & sh->mask] = en->next[k];
    }

    if (en->next[k]) {
        sh->entries[en->next[k] - 1].prev[k] = en->prev[k];
    }
}


ngx_uint_t
ngx_acs_trace_asked(ngx_http_request_t *r)
{
    u_char  *p, *last, *end;

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        if (end - p >= 5 && ngx_strncmp(p, "trace", 5) == 0
            && (end - p == 5 || p[5] == '='))
        {
            return 1;
        }

        p = end + 1;
    }

    return 0;
}


/*
 * ?trace&user=RAW_ID: the user's entries; ?trace&event=ID: the event's;
 * newest first, at most NGX_ACS_TRACE_ANSWER_MAX.  Values are percent-
 * encoded ("+" is itself: raw ids hold no space).  Anything else is 400.
 */

ngx_int_t
ngx_acs_trace_handler(ngx_http_request_t *r)
{
    u_char                 *p, *last, *end, *eq;
    ngx_str_t               key, value, id, body;
    ngx_uint_t              i, k, found;
    ngx_array_t            *entries;
    ngx_acs_gen_t           gen;
    ngx_acs_trace_entry_t  *en;

    if (ngx_acs_trace == NULL) {
        return ngx_acs_trace_refuse(r, NGX_HTTP_NOT_FOUND, "no_trace",
                                    "there is no acs_notify_trace zone");
    }

    k = 0;
    found = 0;
    ngx_str_null(&id);

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        end = ngx_strlchr(p, last, '&');
        if (end == NULL) {
            end = last;
        }

        key.data = p;
        eq = ngx_strlchr(p, end, '=');
        key.len = (eq ? eq : end) - p;

        value.data = eq ? eq + 1 : end;
        value.len = end - value.data;

        p = end + 1;

        if (key.len == 5 && ngx_strncmp(key.data, "trace", 5) == 0) {
            if (value.len) {
                return ngx_acs_trace_refuse(r, NGX_HTTP_BAD_REQUEST,
                                            "trace_query",
                                            "\"trace\" takes no value");
            }

            continue;
        }

        if (key.len == 4 && ngx_strncmp(key.data, "user", 4) == 0) {
            k = NGX_ACS_TRACE_BY_USER;

        } else if (key.len == 5 && ngx_strncmp(key.data, "event", 5) == 0) {
            k = NGX_ACS_TRACE_BY_EVENT;

        } else {
            return ngx_acs_trace_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "trace_query",
                                        "a trace query takes user= or "
                                        "event= and nothing else");
        }

        if (found++) {
            return ngx_acs_trace_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "trace_query",
                                        "a trace query takes one user= or "
                                        "one event=");
        }

        if (ngx_acs_trace_decode(r->pool, &value, &id) != NGX_OK) {
            return ngx_acs_trace_refuse(r, NGX_HTTP_BAD_REQUEST,
                                        "trace_query",
                                        "the value is empty, too long, or "
                                        "not percent-encoded text");
        }
    }

    if (!found) {
        return ngx_acs_trace_refuse(r, NGX_HTTP_BAD_REQUEST, "trace_query",
                                    "a trace query needs user=RAW_ID or "
                                    "event=EVENT_ID");
    }

    entries = ngx_acs_trace_find(r->pool, k, &id);
    if (entries == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "acs_notify: trace by %s \"%V\": %ui entries",
                   k == NGX_ACS_TRACE_BY_USER ? "user" : "event",
                   ngx_acs_log_str(r->pool, &id), entries->nelts);

    if (ngx_acs_gen_init(&gen, r->pool) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_key(&gen, "trace");
    ngx_acs_gen_array_open(&gen);

    en = entries->elts;

    for (i = 0; i < entries->nelts; i++) {
        ngx_acs_trace_json(&gen, &en[i]);
    }

    ngx_acs_gen_array_close(&gen);
    ngx_acs_gen_map_close(&gen);

    if (ngx_acs_gen_done(&gen, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    return ngx_acs_send(r, NGX_HTTP_OK, &body);
}


/* strict percent-decoding: "%" and two hex digits; no control byte */

static ngx_int_t
ngx_acs_trace_decode(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char      *p, *last, *d;
    ngx_int_t    hi, lo;

    if (src->len == 0) {
        return NGX_ERROR;
    }

    d = ngx_pnalloc(pool, src->len);
    if (d == NULL) {
        return NGX_ERROR;
    }

    dst->data = d;

    for (p = src->data, last = p + src->len; p < last; p++) {

        if (*p == '%') {
            if (last - p < 3) {
                return NGX_ERROR;
            }

            hi = ngx_hextoi(p + 1, 1);
            lo = ngx_hextoi(p + 2, 1);

            if (hi == NGX_ERROR || lo == NGX_ERROR) {
                return NGX_ERROR;
            }

            *d = (u_char) (hi * 16 + lo);
            p += 2;

        } else {
            *d = *p;
        }

        if (*d < 0x20 || *d == 0x7f) {
            return NGX_ERROR;
        }

        d++;
    }

    dst->len = d - dst->data;

    return (dst->len <= NGX_ACS_TRACE_QUERY_MAX) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_acs_trace_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *reason)
{
    ngx_http_acs_notify_loc_conf_t  *ancf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);

    ngx_log_error(ancf->log_level, r->connection->log, 0,
                  "acs_notify: trace query refused %ui %s: %s", status,
                  code, reason);

    return ngx_acs_refusal(r, ngx_acs_refuse(r, status, code,
                                             (u_char *) reason,
                                             ngx_strlen(reason)));
}


/* the entries of one user or event, copied under the lock, newest first */

static ngx_array_t *
ngx_acs_trace_find(ngx_pool_t *pool, ngx_uint_t k, ngx_str_t *id)
{
    u_char                 *kept;
    size_t                  len, kept_len;
    u_char                  text[NGX_ACS_TRACE_USER_LEN];
    uint64_t                key;
    uint32_t                i;
    ngx_array_t            *out;
    ngx_acs_trace_sh_t     *sh;
    ngx_acs_trace_entry_t  *en, *copy;

    out = ngx_array_create(pool, 8, sizeof(ngx_acs_trace_entry_t));
    if (out == NULL) {
        return NULL;
    }

    /* the id as an entry keeps it: cut, and masked for a user */

    key = ngx_acs_trace_key(id);

    if (k == NGX_ACS_TRACE_BY_USER) {
        len = ngx_acs_trace_text(text, id, NGX_ACS_TRACE_USER_LEN);
        ngx_acs_trace_mask(text, len);

    } else {
        len = ngx_acs_trace_text(text, id, NGX_ACS_TRACE_EVENT_LEN);
    }

    sh = ngx_acs_trace->sh;

    ngx_shmtx_lock(&ngx_acs_trace->shpool->mutex);

    for (i = sh->heads[k][key & sh->mask]; i; i = en->next[k]) {
        en = &sh->entries[i - 1];

        if (en->key[k] != key) {
            continue;
        }

        if (k == NGX_ACS_TRACE_BY_USER) {
            kept = en->user;
            kept_len = en->user_len;

        } else {
            kept = en->event;
            kept_len = en->event_len;
        }

        if (kept_len != len || ngx_memcmp(kept, text, len) != 0) {
            continue;
        }

        copy = ngx_array_push(out);
        if (copy == NULL) {
            break;
        }

        ngx_memcpy(copy, en, sizeof(ngx_acs_trace_entry_t));

        if (out->nelts == NGX_ACS_TRACE_ANSWER_MAX) {
            break;
        }
    }

    ngx_shmtx_unlock(&ngx_acs_trace->shpool->mutex);

    return out;
}


static void
ngx_acs_trace_json(ngx_acs_gen_t *gen, ngx_acs_trace_entry_t *en)
{
    u_char               buf[sizeof("1970-01-01T00:00:00.000Z")];
    time_t               sec;
    ngx_tm_t             tm;
    ngx_acs_platform_t  *p;

    ngx_acs_gen_map_open(gen);

    sec = (time_t) (en->time / 1000);
    ngx_gmtime(sec, &tm);

    (void) ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (en->time % 1000));

    ngx_acs_trace_pair(gen, "time", buf, sizeof(buf) - 1);
    ngx_acs_trace_pair(gen, "event", en->event, en->event_len);
    ngx_acs_trace_pair(gen, "type", en->type, en->type_len);
    ngx_acs_trace_pair(gen, "user", en->user, en->user_len);

    p = ngx_acs_platform(en->platform);

    if (p) {
        if (en->flags & NGX_ACS_TRACE_TAG) {
            ngx_acs_trace_pair(gen, "tag", en->target, en->target_len);

        } else {
            ngx_acs_trace_pair(gen, "device", en->target, en->target_len);
            ngx_acs_trace_pair(gen, "handle", en->handle, en->handle_len);
        }

        ngx_acs_gen_pair(gen, "platform", &p->name);
        ngx_acs_trace_pair(gen, "hub", en->hub, en->hub_len);
    }

    ngx_acs_gen_pair(gen, "outcome", &ngx_acs_trace_outcomes[en->outcome]);

    if (en->status) {
        ngx_acs_gen_num(gen, "status", en->status);
    }

    if (p) {
        ngx_acs_gen_num(gen, "attempts", en->attempts);
    }

    if (en->age != UINT32_MAX) {
        ngx_acs_gen_num(gen, "age_ms", en->age);
    }

    if (p) {
        ngx_acs_gen_num(gen, "queued_ms", en->queued);
        ngx_acs_gen_num(gen, "hub_ms", en->hub_time);
    }

    if (en->tracking_len) {
        ngx_acs_trace_pair(gen, "tracking_id", en->tracking,
                           en->tracking_len);
    }

    if (en->correlation_len) {
        ngx_acs_trace_pair(gen, "correlation_id", en->correlation,
                           en->correlation_len);
    }

    if (en->notification_len) {
        ngx_acs_trace_pair(gen, "notification_id", en->notification,
                           en->notification_len);
    }

    ngx_acs_gen_map_close(gen);
}


static void
ngx_acs_trace_pair(ngx_acs_gen_t *gen, char *key, u_char *data, size_t len)
{
    ngx_str_t  s;

    s.data = data;
    s.len = len;

    ngx_acs_gen_pair(gen, key, &s);
}
