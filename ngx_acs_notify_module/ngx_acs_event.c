
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A yajl callback state machine.  Each open JSON container is a frame on a
 * small stack; the frame's role says what the values inside it are: events
 * of a batch, envelope fields of an event, or the "data" subtree, whose
 * scalars are kept as (lower-cased dotted path, value) pairs.  Nothing of
 * the input is kept but those copies, so the request body can go.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_parse.h>

#include "ngx_acs_json.h"
#include "ngx_acs_event.h"


#define NGX_ACS_KEY_MAX  128


typedef enum {
    NGX_ACS_FRAME_BATCH = 0,
    NGX_ACS_FRAME_EVENT,
    NGX_ACS_FRAME_DATA,
    NGX_ACS_FRAME_SKIP
} ngx_acs_frame_role_e;


typedef struct {
    ngx_acs_frame_role_e        role;
    ngx_uint_t                  array;      /* unsigned:1 */
    ngx_uint_t                  index;      /* next element of an array */
    size_t                      path_len;   /* or (size_t) -1: too long */
} ngx_acs_frame_t;


/* envelope fields, as bits of ngx_acs_event_t.seen */

#define NGX_ACS_F_ID            0x0001
#define NGX_ACS_F_TOPIC         0x0002
#define NGX_ACS_F_SUBJECT       0x0004
#define NGX_ACS_F_TYPE          0x0008
#define NGX_ACS_F_TIME          0x0010
#define NGX_ACS_F_DATA_VERSION  0x0020
#define NGX_ACS_F_META_VERSION  0x0040
#define NGX_ACS_F_DATA          0x0080
#define NGX_ACS_F_SPEC_VERSION  0x0100
#define NGX_ACS_F_SOURCE        0x0200
#define NGX_ACS_F_CE_TYPE       0x0400
#define NGX_ACS_F_CE_TIME       0x0800
#define NGX_ACS_F_DATA_BASE64   0x1000
#define NGX_ACS_F_CONTENT_TYPE  0x2000

#define NGX_ACS_F_EVENTGRID                                                   \
    (NGX_ACS_F_ID|NGX_ACS_F_TOPIC|NGX_ACS_F_SUBJECT|NGX_ACS_F_TYPE            \
     |NGX_ACS_F_TIME|NGX_ACS_F_DATA_VERSION|NGX_ACS_F_DATA)
#define NGX_ACS_F_CLOUDEVENTS  (NGX_ACS_F_SPEC_VERSION|NGX_ACS_F_ID           \
                                |NGX_ACS_F_SOURCE|NGX_ACS_F_CE_TYPE)


typedef struct {
    ngx_str_t                   name;
    ngx_uint_t                  bit;
    size_t                      offset;
} ngx_acs_envelope_field_t;


struct ngx_acs_event_parser_s {
    ngx_pool_t                 *pool;
    yajl_handle                 yajl;

    ngx_array_t                 events;
    ngx_acs_event_t            *event;        /* the event being parsed */
    ngx_acs_schema_e            schema;

    size_t                      max_event_size;
    ngx_uint_t                  max_events;

    off_t                       base;         /* offset of this chunk */

    ngx_uint_t                  depth;
    ngx_acs_frame_t             frames[NGX_ACS_EVENT_MAX_DEPTH];

    ngx_acs_envelope_field_t   *key_field;    /* envelope key just read */
    ngx_uint_t                  key_bit;
    u_char                      spec_key[sizeof("specversion") - 1];
    ngx_uint_t                  spec_misspelt;  /* unsigned:1, in the event */
    size_t                      key_len;      /* or (size_t) -1: too long */
    u_char                      key[NGX_ACS_KEY_MAX];
    u_char                      path[NGX_ACS_EVENT_PATH_MAX];

    ngx_uint_t                  data_only;    /* unsigned:1 */
    ngx_uint_t                  single;       /* unsigned:1 */
    ngx_uint_t                  status;
    ngx_str_t                   error;
    u_char                      errbuf[256];
};


static ngx_int_t ngx_acs_event_value(ngx_acs_event_parser_t *p,
    ngx_acs_json_type_e type, const u_char *s, size_t len);
static ngx_int_t ngx_acs_event_open(ngx_acs_event_parser_t *p,
    ngx_uint_t array);
static ngx_int_t ngx_acs_event_close(ngx_acs_event_parser_t *p);
static ngx_int_t ngx_acs_event_begin(ngx_acs_event_parser_t *p);
static ngx_int_t ngx_acs_event_end(ngx_acs_event_parser_t *p);
static ngx_int_t ngx_acs_event_push_frame(ngx_acs_event_parser_t *p,
    ngx_acs_frame_role_e role, ngx_uint_t array, size_t path_len);
static size_t ngx_acs_event_child_path(ngx_acs_event_parser_t *p,
    ngx_acs_frame_t *f);
static ngx_int_t ngx_acs_event_fail(ngx_acs_event_parser_t *p,
    ngx_uint_t status, const char *fmt, ...);
static ngx_uint_t ngx_acs_event_control(const u_char *s, size_t len);
static ngx_str_t ngx_acs_event_yajl_error(u_char *msg);
static off_t ngx_acs_event_offset(ngx_acs_event_parser_t *p);
static void ngx_acs_event_cleanup(void *data);

static int ngx_acs_yajl_null(void *ctx);
static int ngx_acs_yajl_boolean(void *ctx, int value);
static int ngx_acs_yajl_number(void *ctx, const char *s, size_t len);
static int ngx_acs_yajl_string(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_acs_yajl_start_map(void *ctx);
static int ngx_acs_yajl_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int ngx_acs_yajl_end_map(void *ctx);
static int ngx_acs_yajl_start_array(void *ctx);
static int ngx_acs_yajl_end_array(void *ctx);


static yajl_callbacks  ngx_acs_yajl_callbacks = {
    ngx_acs_yajl_null,
    ngx_acs_yajl_boolean,
    NULL,
    NULL,
    ngx_acs_yajl_number,
    ngx_acs_yajl_string,
    ngx_acs_yajl_start_map,
    ngx_acs_yajl_map_key,
    ngx_acs_yajl_end_map,
    ngx_acs_yajl_start_array,
    ngx_acs_yajl_end_array
};


#define ngx_acs_ev_field(name, bit, member)                                   \
    { ngx_string(name), bit, offsetof(ngx_acs_event_t, member) }

static ngx_acs_envelope_field_t  ngx_acs_envelope_fields[] = {
    ngx_acs_ev_field("id", NGX_ACS_F_ID, id),
    ngx_acs_ev_field("topic", NGX_ACS_F_TOPIC, topic),
    ngx_acs_ev_field("subject", NGX_ACS_F_SUBJECT, subject),
    ngx_acs_ev_field("eventType", NGX_ACS_F_TYPE, type),
    ngx_acs_ev_field("eventTime", NGX_ACS_F_TIME, time),
    ngx_acs_ev_field("dataVersion", NGX_ACS_F_DATA_VERSION, data_version),
    ngx_acs_ev_field("metadataVersion", NGX_ACS_F_META_VERSION, data_version),
    ngx_acs_ev_field("data", NGX_ACS_F_DATA, data_string),
    ngx_acs_ev_field("specversion", NGX_ACS_F_SPEC_VERSION, spec_version),
    ngx_acs_ev_field("source", NGX_ACS_F_SOURCE, topic),
    ngx_acs_ev_field("type", NGX_ACS_F_CE_TYPE, type),
    ngx_acs_ev_field("time", NGX_ACS_F_CE_TIME, time),
    ngx_acs_ev_field("data_base64", NGX_ACS_F_DATA_BASE64, data_string),
    ngx_acs_ev_field("datacontenttype", NGX_ACS_F_CONTENT_TYPE, data_string),
    { ngx_null_string, 0, 0 }
};


ngx_acs_event_parser_t *
ngx_acs_event_parser_create(ngx_pool_t *pool, size_t max_event_size,
    ngx_uint_t max_events)
{
    ngx_pool_cleanup_t      *cln;
    ngx_acs_event_parser_t  *p;

    p = ngx_pcalloc(pool, sizeof(ngx_acs_event_parser_t));
    if (p == NULL) {
        return NULL;
    }

    if (ngx_array_init(&p->events, pool, 1, sizeof(ngx_acs_event_t))
        != NGX_OK)
    {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    /* yajl allocates with malloc(); the pool cleanup frees it on every path */

    p->yajl = yajl_alloc(&ngx_acs_yajl_callbacks, NULL, p);
    if (p->yajl == NULL) {
        return NULL;
    }

    cln->handler = ngx_acs_event_cleanup;
    cln->data = p;

    /* strict JSON: UTF-8 validated, no comments, no trailing garbage */

    yajl_config(p->yajl, yajl_allow_comments, 0);
    yajl_config(p->yajl, yajl_dont_validate_strings, 0);

    p->pool = pool;
    p->max_event_size = max_event_size;
    p->max_events = max_events;

    return p;
}


static void
ngx_acs_event_cleanup(void *data)
{
    ngx_acs_event_parser_t  *p = data;

    if (p->yajl) {
        yajl_free(p->yajl);
        p->yajl = NULL;
    }
}


ngx_int_t
ngx_acs_event_parse(ngx_acs_event_parser_t *p, u_char *data, size_t len)
{
    u_char       *msg;
    ngx_str_t     text;
    yajl_status   st;

    if (p->status) {
        return NGX_ERROR;
    }

    st = yajl_parse(p->yajl, data, len);

    if (st == yajl_status_ok) {
        p->base += len;
        return NGX_OK;
    }

    if (st == yajl_status_client_canceled) {
        return NGX_ERROR;
    }

    msg = yajl_get_error(p->yajl, 0, data, len);
    text = ngx_acs_event_yajl_error(msg);

    (void) ngx_acs_event_fail(p, 400, "invalid JSON at byte %O: %V",
                              ngx_acs_event_offset(p), &text);
    if (msg) {
        yajl_free_error(p->yajl, msg);
    }

    return NGX_ERROR;
}


ngx_int_t
ngx_acs_event_parse_done(ngx_acs_event_parser_t *p)
{
    u_char       *msg;
    ngx_str_t     text;
    yajl_status   st;

    if (p->status) {
        return NGX_ERROR;
    }

    st = yajl_complete_parse(p->yajl);

    if (st == yajl_status_client_canceled) {
        return NGX_ERROR;
    }

    if (st != yajl_status_ok) {
        msg = yajl_get_error(p->yajl, 0, NULL, 0);
        text = ngx_acs_event_yajl_error(msg);

        (void) ngx_acs_event_fail(p, 400, "invalid JSON: %V", &text);
        if (msg) {
            yajl_free_error(p->yajl, msg);
        }

        return NGX_ERROR;
    }

    if (p->depth != 0) {
        return ngx_acs_event_fail(p, 400, "invalid JSON: truncated");
    }

    if (!p->data_only && p->events.nelts == 0) {
        return ngx_acs_event_fail(p, 400, "no events in the body");
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, p->pool->log, 0,
                   "acs_notify parser: %ui events%s", p->events.nelts,
                   p->single ? ", a single object" : "");

    return NGX_OK;
}


ngx_uint_t
ngx_acs_event_parser_status(ngx_acs_event_parser_t *p)
{
    return p->status;
}


ngx_str_t *
ngx_acs_event_parser_error(ngx_acs_event_parser_t *p)
{
    return &p->error;
}


ngx_array_t *
ngx_acs_event_parser_events(ngx_acs_event_parser_t *p)
{
    return &p->events;
}


ngx_int_t
ngx_acs_event_parse_data_string(ngx_pool_t *pool, ngx_acs_event_t *ev)
{
    ngx_acs_event_parser_t  *p;

    p = ngx_acs_event_parser_create(pool, NGX_ACS_EVENT_MAX_SIZE, 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p->data_only = 1;
    p->event = ev;

    if (ngx_acs_event_parse(p, ev->data_string.data, ev->data_string.len)
        != NGX_OK
        || ngx_acs_event_parse_done(p) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_acs_field_t *
ngx_acs_event_field(ngx_acs_event_t *ev, ngx_str_t *path)
{
    ngx_uint_t        i;
    ngx_acs_field_t  *f;

    f = ev->fields.elts;

    for (i = 0; i < ev->fields.nelts; i++) {
        if (f[i].path.len == path->len
            && ngx_strncmp(f[i].path.data, path->data, path->len) == 0)
        {
            return &f[i];
        }
    }

    return NULL;
}


ngx_str_t *
ngx_acs_event_string(ngx_acs_event_t *ev, char *path)
{
    ngx_str_t         p;
    ngx_acs_field_t  *f;

    p.data = (u_char *) path;
    p.len = ngx_strlen(path);

    f = ngx_acs_event_field(ev, &p);

    if (f == NULL || f->type != NGX_ACS_JSON_STRING) {
        return NULL;
    }

    return &f->value;
}


void
ngx_acs_event_text(ngx_acs_event_t *ev, ngx_str_t *path, ngx_str_t *value)
{
    ngx_acs_field_t  *f;

    f = ngx_acs_event_field(ev, path);

    if (f == NULL || f->type == NGX_ACS_JSON_NULL) {
        ngx_str_set(value, "");
        return;
    }

    *value = f->value;
}


ngx_acs_event_t *
ngx_acs_event_copy(ngx_pool_t *pool, ngx_acs_event_t *ev)
{
    ngx_uint_t        i;
    ngx_str_t        *s[8];
    ngx_acs_event_t  *copy;
    ngx_acs_field_t  *f, *cf;

    copy = ngx_palloc(pool, sizeof(ngx_acs_event_t));
    if (copy == NULL) {
        return NULL;
    }

    *copy = *ev;

    if (ngx_array_init(&copy->fields, pool, ngx_max(ev->fields.nelts, 1),
                       sizeof(ngx_acs_field_t))
        != NGX_OK)
    {
        return NULL;
    }

    s[0] = &copy->id;
    s[1] = &copy->type;
    s[2] = &copy->topic;
    s[3] = &copy->subject;
    s[4] = &copy->time;
    s[5] = &copy->data_version;
    s[6] = &copy->spec_version;
    s[7] = &copy->data_string;

    for (i = 0; i < 8; i++) {
        if (ngx_acs_event_dup(pool, s[i]) != NGX_OK) {
            return NULL;
        }
    }

    f = ev->fields.elts;

    for (i = 0; i < ev->fields.nelts; i++) {
        cf = ngx_array_push(&copy->fields);
        if (cf == NULL) {
            return NULL;
        }

        *cf = f[i];

        if (ngx_acs_event_dup(pool, &cf->path) != NGX_OK
            || ngx_acs_event_dup(pool, &cf->value) != NGX_OK)
        {
            return NULL;
        }
    }

    return copy;
}


ngx_int_t
ngx_acs_event_dup(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    if (s->len == 0) {
        ngx_str_set(s, "");
        return NGX_OK;
    }

    /* not ngx_pstrdup(): the unit tests' shim has the pool, not the rest */

    p = ngx_pnalloc(pool, s->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, s->data, s->len);
    s->data = p;

    return NGX_OK;
}


/* yajl callbacks: each returns 0 to stop the parse */

static int
ngx_acs_yajl_null(void *ctx)
{
    return ngx_acs_event_value(ctx, NGX_ACS_JSON_NULL,
                               (u_char *) "null", 4) == NGX_OK;
}


static int
ngx_acs_yajl_boolean(void *ctx, int value)
{
    return ngx_acs_event_value(ctx, NGX_ACS_JSON_BOOL,
                               (u_char *) (value ? "true" : "false"),
                               value ? 4 : 5) == NGX_OK;
}


static int
ngx_acs_yajl_number(void *ctx, const char *s, size_t len)
{
    return ngx_acs_event_value(ctx, NGX_ACS_JSON_NUMBER,
                               (const u_char *) s, len) == NGX_OK;
}


static int
ngx_acs_yajl_string(void *ctx, const unsigned char *s, size_t len)
{
    return ngx_acs_event_value(ctx, NGX_ACS_JSON_STRING, s, len) == NGX_OK;
}


static int
ngx_acs_yajl_start_map(void *ctx)
{
    return ngx_acs_event_open(ctx, 0) == NGX_OK;
}


static int
ngx_acs_yajl_start_array(void *ctx)
{
    return ngx_acs_event_open(ctx, 1) == NGX_OK;
}


static int
ngx_acs_yajl_end_map(void *ctx)
{
    return ngx_acs_event_close(ctx) == NGX_OK;
}


static int
ngx_acs_yajl_end_array(void *ctx)
{
    return ngx_acs_event_close(ctx) == NGX_OK;
}


static int
ngx_acs_yajl_map_key(void *ctx, const unsigned char *s, size_t len)
{
    ngx_acs_event_parser_t  *p = ctx;

    ngx_uint_t                 i;
    ngx_acs_frame_t           *f;
    ngx_acs_envelope_field_t  *ef;

    f = &p->frames[p->depth - 1];

    switch (f->role) {

    case NGX_ACS_FRAME_EVENT:

        /* envelope keys are case-sensitive, as both schemas say */

        p->key_field = NULL;

        for (ef = ngx_acs_envelope_fields; ef->name.len; ef++) {
            if (ef->name.len == len
                && ngx_strncmp(ef->name.data, s, len) == 0)
            {
                break;
            }
        }

        if (ef->name.len == 0) {

            /*
             * "specVersion", as in examples Microsoft publishes: kept to
             * say why the event is no CloudEvent
             */

            if (len == sizeof(p->spec_key)
                && ngx_strncasecmp((u_char *) s, (u_char *) "specversion",
                                   len)
                   == 0)
            {
                ngx_memcpy(p->spec_key, s, len);
                p->spec_misspelt = 1;
            }

            return 1;
        }

        if (p->event->seen & ef->bit) {
            return ngx_acs_event_fail(p, 400, "duplicate field \"%V\" "
                                      "in event %ui", &ef->name,
                                      p->events.nelts) == NGX_OK;
        }

        p->event->seen |= ef->bit;
        p->key_field = ef;
        return 1;

    case NGX_ACS_FRAME_DATA:

        /* keys inside "data" match case-insensitively: keep them lower */

        if (len > NGX_ACS_KEY_MAX) {
            p->key_len = (size_t) -1;
            return 1;
        }

        for (i = 0; i < len; i++) {
            p->key[i] = ngx_tolower(s[i]);
        }

        p->key_len = len;
        return 1;

    default:
        return 1;
    }
}


static ngx_int_t
ngx_acs_event_value(ngx_acs_event_parser_t *p, ngx_acs_json_type_e type,
    const u_char *s, size_t len)
{
    size_t                     plen;
    ngx_str_t                 *dst;
    ngx_acs_frame_t           *f;
    ngx_acs_field_t           *field;
    ngx_acs_envelope_field_t  *ef;

    if (p->depth == 0) {
        return ngx_acs_event_fail(p, 400, "body is not a JSON array "
                                  "or object");
    }

    f = &p->frames[p->depth - 1];

    switch (f->role) {

    case NGX_ACS_FRAME_BATCH:
        return ngx_acs_event_fail(p, 400, "event %ui is not a JSON object",
                                  p->events.nelts + 1);

    case NGX_ACS_FRAME_EVENT:
        ef = p->key_field;
        p->key_field = NULL;

        if (ef == NULL) {
            return NGX_OK;
        }

        if (ef->bit == NGX_ACS_F_DATA) {
            if (type == NGX_ACS_JSON_STRING) {
                break;
            }

            /* CloudEvents data may be any JSON value: nothing to route */
            return NGX_OK;
        }

        if (type != NGX_ACS_JSON_STRING) {
            return ngx_acs_event_fail(p, 400, "field \"%V\" of event %ui "
                                      "is not a string", &ef->name,
                                      p->events.nelts);
        }

        break;

    case NGX_ACS_FRAME_DATA:
        plen = ngx_acs_event_child_path(p, f);
        if (plen == (size_t) -1) {
            return NGX_OK;
        }

        /* a raw id or a text read up to a NUL would be another one */

        if (ngx_strlchr((u_char *) s, (u_char *) s + len, '\0') != NULL) {
            return ngx_acs_event_fail(p, 400, "a string in \"data\" of event "
                                      "%ui holds U+0000", p->events.nelts);
        }

        field = ngx_array_push(&p->event->fields);
        if (field == NULL) {
            return ngx_acs_event_fail(p, 500, "out of memory");
        }

        field->path.data = ngx_pnalloc(p->pool, plen + len);
        if (field->path.data == NULL) {
            return ngx_acs_event_fail(p, 500, "out of memory");
        }

        ngx_memcpy(field->path.data, p->path, plen);
        field->path.len = plen;

        field->value.data = field->path.data + plen;
        field->value.len = len;
        ngx_memcpy(field->value.data, s, len);

        field->type = type;
        return NGX_OK;

    default: /* NGX_ACS_FRAME_SKIP */
        return NGX_OK;
    }

    /* an envelope string */

    dst = (ngx_str_t *) ((u_char *) p->event + ef->offset);

    if (ef->bit == NGX_ACS_F_META_VERSION
        || ef->bit == NGX_ACS_F_CONTENT_TYPE
        || ef->bit == NGX_ACS_F_DATA_BASE64)
    {
        /* checked for type only, not kept */
        return NGX_OK;
    }

    /*
     * Ids, types, topics and times go to logs, headers and the registry:
     * no control character (CloudEvents forbids them in every string
     * attribute).  "data" as a string is JSON text, parsed later.
     */

    if (ef->bit != NGX_ACS_F_DATA && ngx_acs_event_control(s, len)) {
        return ngx_acs_event_fail(p, 400, "field \"%V\" of event %ui holds "
                                  "a control character", &ef->name,
                                  p->events.nelts);
    }

    dst->data = ngx_pnalloc(p->pool, len);
    if (dst->data == NULL) {
        return ngx_acs_event_fail(p, 500, "out of memory");
    }

    ngx_memcpy(dst->data, s, len);
    dst->len = len;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_event_open(ngx_acs_event_parser_t *p, ngx_uint_t array)
{
    size_t                     plen;
    ngx_acs_frame_t           *f;
    ngx_acs_envelope_field_t  *ef;

    if (p->depth == NGX_ACS_EVENT_MAX_DEPTH) {
        return ngx_acs_event_fail(p, 400, "JSON nested deeper than %d levels",
                                  NGX_ACS_EVENT_MAX_DEPTH);
    }

    if (p->depth == 0) {

        if (p->data_only) {
            if (array) {
                return ngx_acs_event_fail(p, 400, "data is not an object");
            }

            return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_DATA, 0, 0);
        }

        if (array) {
            return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_BATCH, 1, 0);
        }

        /* a single CloudEvents object */

        p->single = 1;

        if (ngx_acs_event_begin(p) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_EVENT, 0, 0);
    }

    f = &p->frames[p->depth - 1];

    switch (f->role) {

    case NGX_ACS_FRAME_BATCH:
        if (array) {
            return ngx_acs_event_fail(p, 400, "event %ui is not a JSON object",
                                      p->events.nelts + 1);
        }

        if (ngx_acs_event_begin(p) != NGX_OK) {
            return NGX_ERROR;
        }

        return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_EVENT, 0, 0);

    case NGX_ACS_FRAME_EVENT:
        ef = p->key_field;
        p->key_field = NULL;

        if (ef == NULL) {
            /* an extension attribute or unknown member */
            return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_SKIP, array, 0);
        }

        if (ef->bit == NGX_ACS_F_DATA) {
            return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_DATA, array, 0);
        }

        return ngx_acs_event_fail(p, 400, "field \"%V\" of event %ui "
                                  "is not a string", &ef->name,
                                  p->events.nelts);

    case NGX_ACS_FRAME_DATA:
        plen = ngx_acs_event_child_path(p, f);
        return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_DATA, array, plen);

    default: /* NGX_ACS_FRAME_SKIP */
        return ngx_acs_event_push_frame(p, NGX_ACS_FRAME_SKIP, array, 0);
    }
}


static ngx_int_t
ngx_acs_event_close(ngx_acs_event_parser_t *p)
{
    ngx_acs_frame_role_e  role;

    role = p->frames[--p->depth].role;

    if (role == NGX_ACS_FRAME_EVENT) {
        return ngx_acs_event_end(p);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_event_push_frame(ngx_acs_event_parser_t *p, ngx_acs_frame_role_e role,
    ngx_uint_t array, size_t path_len)
{
    ngx_acs_frame_t  *f;

    f = &p->frames[p->depth++];

    f->role = role;
    f->array = array;
    f->index = 0;
    f->path_len = path_len;

    return NGX_OK;
}


/*
 * Writes the path of the next value inside frame f into p->path and returns
 * its length, or (size_t) -1 when the path does not fit: such values are
 * simply not kept (no route or template can name them).
 */

static size_t
ngx_acs_event_child_path(ngx_acs_event_parser_t *p, ngx_acs_frame_t *f)
{
    u_char  *last, *end;

    if (f->path_len == (size_t) -1) {
        if (f->array) {
            f->index++;
        }
        return (size_t) -1;
    }

    last = p->path + f->path_len;
    end = p->path + NGX_ACS_EVENT_PATH_MAX;

    if (f->path_len && last < end) {
        *last++ = '.';
    }

    if (f->array) {
        if ((size_t) (end - last) < NGX_INT_T_LEN) {
            f->index++;
            return (size_t) -1;
        }

        last = ngx_sprintf(last, "%ui", f->index++);
        return last - p->path;
    }

    if (p->key_len == (size_t) -1 || (size_t) (end - last) < p->key_len) {
        return (size_t) -1;
    }

    last = ngx_cpymem(last, p->key, p->key_len);

    return last - p->path;
}


static ngx_int_t
ngx_acs_event_begin(ngx_acs_event_parser_t *p)
{
    ngx_acs_event_t  *ev;

    if (p->events.nelts == p->max_events) {
        return ngx_acs_event_fail(p, 413, "more than %ui events in a batch",
                                  p->max_events);
    }

    ev = ngx_array_push(&p->events);
    if (ev == NULL) {
        return ngx_acs_event_fail(p, 500, "out of memory");
    }

    ngx_memzero(ev, sizeof(ngx_acs_event_t));

    if (ngx_array_init(&ev->fields, p->pool, 16, sizeof(ngx_acs_field_t))
        != NGX_OK)
    {
        return ngx_acs_event_fail(p, 500, "out of memory");
    }

    /* the offset just past the event's "{" */
    ev->start = ngx_acs_event_offset(p) - 1;

    p->event = ev;
    p->spec_misspelt = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_event_end(ngx_acs_event_parser_t *p)
{
    ngx_uint_t        n, missing;
    ngx_acs_event_t  *ev;

    ev = p->event;
    n = p->events.nelts;

    ev->size = ngx_acs_event_offset(p) - ev->start;

    if (ev->size > p->max_event_size) {
        return ngx_acs_event_fail(p, 413, "event %ui is %uz bytes, more than "
                                  "%uz", n, ev->size, p->max_event_size);
    }

    if (ev->seen & NGX_ACS_F_SPEC_VERSION) {
        ev->schema = NGX_ACS_SCHEMA_CLOUDEVENTS;
        missing = NGX_ACS_F_CLOUDEVENTS & ~ev->seen;

    } else if (p->single || (ev->seen & NGX_ACS_F_SOURCE)
               || (p->spec_misspelt && (NGX_ACS_F_EVENTGRID & ~ev->seen)))
    {
        /* meant as a CloudEvent: say what it lacks */

        if (p->spec_misspelt) {
            return ngx_acs_event_fail(p, 400, "event %ui has \"%*s\" but no "
                                      "\"specversion\": CloudEvents "
                                      "attribute names are lower case", n,
                                      sizeof(p->spec_key), p->spec_key);
        }

        if (p->single) {
            return ngx_acs_event_fail(p, 400, "a single event object must be "
                                      "a CloudEvent, and it has no "
                                      "\"specversion\" (Event Grid events "
                                      "come in an array)");
        }

        return ngx_acs_event_fail(p, 400, "event %ui has \"source\" but no "
                                  "\"specversion\"", n);

    } else {
        ev->schema = NGX_ACS_SCHEMA_EVENTGRID;
        missing = NGX_ACS_F_EVENTGRID & ~ev->seen;
    }

    if (missing) {
        return ngx_acs_event_fail(p, 400, "event %ui misses required field "
                                  "\"%s\"", n,
                                  (missing & NGX_ACS_F_SPEC_VERSION)
                                  ? "specversion"
                                  : (missing & NGX_ACS_F_ID) ? "id"
                                  : (missing & NGX_ACS_F_TOPIC) ? "topic"
                                  : (missing & NGX_ACS_F_SOURCE) ? "source"
                                  : (missing & NGX_ACS_F_SUBJECT) ? "subject"
                                  : (missing & NGX_ACS_F_TYPE) ? "eventType"
                                  : (missing & NGX_ACS_F_CE_TYPE) ? "type"
                                  : (missing & NGX_ACS_F_TIME) ? "eventTime"
                                  : (missing & NGX_ACS_F_DATA_VERSION)
                                    ? "dataVersion" : "data");
    }

    if (ev->schema == NGX_ACS_SCHEMA_CLOUDEVENTS
        && (ev->spec_version.len != 3
            || ngx_strncmp(ev->spec_version.data, "1.0", 3) != 0))
    {
        return ngx_acs_event_fail(p, 400, "event %ui has unsupported "
                                  "specversion \"%V\"", n,
                                  ngx_acs_log_str(p->pool, &ev->spec_version));
    }

    if (ev->id.len == 0 || ev->type.len == 0 || ev->topic.len == 0) {
        return ngx_acs_event_fail(p, 400, "event %ui has an empty %s", n,
                                  ev->id.len == 0 ? "id"
                                  : ev->type.len == 0 ? "type" : "topic");
    }

    if (p->schema == NGX_ACS_SCHEMA_UNKNOWN) {
        p->schema = ev->schema;

    } else if (p->schema != ev->schema) {
        return ngx_acs_event_fail(p, 400, "event %ui mixes Event Grid and "
                                  "CloudEvents schemas", n);
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, p->pool->log, 0,
                   "acs_notify parser: event %ui \"%V\" (%V, %s), %uz bytes",
                   n, ngx_acs_log_str(p->pool, &ev->id),
                   ngx_acs_log_str(p->pool, &ev->type),
                   ev->schema == NGX_ACS_SCHEMA_CLOUDEVENTS
                   ? "CloudEvents" : "Event Grid schema", ev->size);

    p->event = NULL;

    return NGX_OK;
}


/* C0, DEL, and C1 (U+0080 to U+009F, in UTF-8 "\xc2\x80" to "\xc2\x9f") */

static ngx_uint_t
ngx_acs_event_control(const u_char *s, size_t len)
{
    const u_char  *last;

    for (last = s + len; s < last; s++) {
        if (*s < 0x20 || *s == 0x7f
            || (*s == 0xc2 && s + 1 < last && s[1] >= 0x80 && s[1] <= 0x9f))
        {
            return 1;
        }
    }

    return 0;
}


/* yajl's message without the newline it ends with */

static ngx_str_t
ngx_acs_event_yajl_error(u_char *msg)
{
    ngx_str_t  text;

    if (msg == NULL) {
        ngx_str_set(&text, "syntax error");
        return text;
    }

    text.data = msg;
    text.len = ngx_strlen(msg);

    while (text.len
           && (msg[text.len - 1] == '\n' || msg[text.len - 1] == ' '))
    {
        text.len--;
    }

    return text;
}


static off_t
ngx_acs_event_offset(ngx_acs_event_parser_t *p)
{
    return p->base + (off_t) yajl_get_bytes_consumed(p->yajl);
}


static ngx_int_t
ngx_acs_event_fail(ngx_acs_event_parser_t *p, ngx_uint_t status,
    const char *fmt, ...)
{
    u_char   *last;
    va_list   args;

    if (p->status) {
        return NGX_ERROR;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p->errbuf, p->errbuf + sizeof(p->errbuf), fmt, args);
    va_end(args);

    p->status = status;
    p->error.data = p->errbuf;
    p->error.len = last - p->errbuf;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, p->pool->log, 0,
                   "acs_notify parser: refused, %ui: %V", status, &p->error);

    return NGX_ERROR;
}
