
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_json.h"


#define NGX_ACS_JSON_TREE_MAX  (1024 * 1024)
#define NGX_ACS_LOG_STR_MAX    256


static void ngx_acs_json_tree_cleanup(void *data);
static void *ngx_acs_yajl_malloc(void *ctx, size_t size);
static void *ngx_acs_yajl_realloc(void *ctx, void *ptr, size_t size);
static void ngx_acs_yajl_free(void *ctx, void *ptr);


static u_char  ngx_acs_hex[] = "0123456789abcdef";


size_t
ngx_acs_json_escape_len(ngx_str_t *s)
{
    size_t   n;
    u_char  *p, *last;

    n = s->len;

    for (p = s->data, last = p + s->len; p < last; p++) {
        if (*p == '"' || *p == '\\' || *p == '\n' || *p == '\r'
            || *p == '\t')
        {
            n++;

        } else if (*p < 0x20) {
            n += 5;
        }
    }

    return n;
}


/* escapes quotes, backslashes and control characters; UTF-8 passes as is */

u_char *
ngx_acs_json_escape(u_char *dst, ngx_str_t *s)
{
    u_char  *p, *last;

    for (p = s->data, last = p + s->len; p < last; p++) {

        switch (*p) {

        case '"':
        case '\\':
            *dst++ = '\\';
            *dst++ = *p;
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        case '\r':
            *dst++ = '\\';
            *dst++ = 'r';
            break;

        case '\t':
            *dst++ = '\\';
            *dst++ = 't';
            break;

        default:
            if (*p < 0x20) {
                *dst++ = '\\';
                *dst++ = 'u';
                *dst++ = '0';
                *dst++ = '0';
                *dst++ = ngx_acs_hex[*p >> 4];
                *dst++ = ngx_acs_hex[*p & 0xf];

            } else {
                *dst++ = *p;
            }
        }
    }

    return dst;
}


/*
 * Control characters would let a sender start a line of its own in the
 * error log ("\n2026/12/05 12:00:00 [alert] ..."), quotes would blur where
 * a quoted value ends, and a megabyte of it would fill the line: printable
 * ASCII is kept, '"' and '\\' are escaped with a backslash, every other
 * byte is written \xHH, and only the first 256 bytes are shown.
 */

ngx_str_t *
ngx_acs_log_str(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char     *p, *d, *last;
    ngx_str_t  *out;

    static ngx_str_t  failed = ngx_string("-");

    last = s->data + ngx_min(s->len, NGX_ACS_LOG_STR_MAX);

    /* most are safe as they are: no copy */

    for (p = s->data; p < last; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\') {
            break;
        }
    }

    if (p == s->data + s->len) {
        return s;
    }

    out = ngx_palloc(pool, sizeof(ngx_str_t));
    if (out == NULL) {
        return &failed;
    }

    out->data = ngx_pnalloc(pool, 4 * (last - s->data) + 3);
    if (out->data == NULL) {
        return &failed;
    }

    d = out->data;

    for (p = s->data; p < last; p++) {

        if (*p == '"' || *p == '\\') {
            *d++ = '\\';
            *d++ = *p;

        } else if (*p >= 0x20 && *p < 0x7f) {
            *d++ = *p;

        } else {
            *d++ = '\\';
            *d++ = 'x';
            *d++ = ngx_acs_hex[*p >> 4];
            *d++ = ngx_acs_hex[*p & 0xf];
        }
    }

    if (s->len > NGX_ACS_LOG_STR_MAX) {
        d = ngx_cpymem(d, "...", 3);
    }

    out->len = d - out->data;

    return out;
}


/* strict base64url: no padding, no characters outside the alphabet */

ngx_int_t
ngx_acs_base64url_decode(ngx_pool_t *pool, ngx_str_t *src, ngx_str_t *dst)
{
    u_char  *p, *last;

    for (p = src->data, last = p + src->len; p < last; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
        {
            return NGX_ERROR;
        }
    }

    dst->data = ngx_pnalloc(pool, ngx_base64_decoded_length(src->len) + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    if (ngx_decode_base64url(dst, src) != NGX_OK) {
        return NGX_ERROR;
    }

    dst->data[dst->len] = '\0';

    return NGX_OK;
}


yajl_val
ngx_acs_json_tree(ngx_pool_t *pool, ngx_str_t *json)
{
    u_char              *text;
    yajl_val             tree;
    ngx_pool_cleanup_t  *cln;

    if (json->len > NGX_ACS_JSON_TREE_MAX || ngx_acs_json_check(json)) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    text = ngx_pnalloc(pool, json->len + 1);
    if (text == NULL) {
        return NULL;
    }

    ngx_memcpy(text, json->data, json->len);
    text[json->len] = '\0';

    tree = yajl_tree_parse((const char *) text, NULL, 0);
    if (tree == NULL) {
        return NULL;
    }

    cln->handler = ngx_acs_json_tree_cleanup;
    cln->data = tree;

    return tree;
}


/*
 * What a JSON text must be before yajl_tree builds it:
 *
 * - no NUL byte, and no \u0000 escape: yajl_tree keeps its strings as C
 *   strings, so either would cut a value short where it is read;
 * - at most NGX_ACS_JSON_DEPTH_MAX nested arrays and objects:
 *   yajl_tree_free() recurses once per level, and a few hundred thousand
 *   levels (a valid text well under 1 MB) overflow a worker's stack;
 * - at most NGX_ACS_JSON_TOKENS_MAX containers, commas and colons, a bound
 *   on the values of the tree and so on the work and memory building it.
 *
 * Outside strings these are plain bytes; inside strings a backslash
 * always starts an escape, so one pass that tracks quotes suffices.
 * Returns NULL, or why the text is refused.
 */

char *
ngx_acs_json_check(ngx_str_t *json)
{
    u_char      *p, *last;
    ngx_uint_t   depth, tokens, in_string;

    depth = 0;
    tokens = 0;
    in_string = 0;
    last = json->data + json->len;

    for (p = json->data; p < last; p++) {

        if (*p == '\0') {
            return "holds a NUL byte";
        }

        if (in_string) {

            if (*p == '"') {
                in_string = 0;

            } else if (*p == '\\' && p + 1 < last) {

                if (p[1] == 'u' && last - p >= 6
                    && ngx_strncmp(p + 2, "0000", 4) == 0)
                {
                    return "holds U+0000 in a string";
                }

                p++;
            }

            continue;
        }

        switch (*p) {

        case '"':
            in_string = 1;
            continue;

        case '[':
        case '{':
            if (++depth > NGX_ACS_JSON_DEPTH_MAX) {
                return "nests arrays and objects too deep";
            }

            break;

        case ']':
        case '}':
            if (depth) {
                depth--;
            }

            break;

        case ',':
        case ':':
            break;

        default:
            continue;
        }

        if (++tokens > NGX_ACS_JSON_TOKENS_MAX) {
            return "holds too many values";
        }
    }

    return NULL;
}


static void
ngx_acs_json_tree_cleanup(void *data)
{
    yajl_tree_free(data);
}


yajl_val
ngx_acs_json_tree_get(yajl_val obj, const char *key)
{
    size_t  i;

    if (!YAJL_IS_OBJECT(obj)) {
        return NULL;
    }

    for (i = 0; i < obj->u.object.len; i++) {
        if (ngx_strcmp(obj->u.object.keys[i], key) == 0) {
            return obj->u.object.values[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_acs_json_tree_string(yajl_val obj, const char *key, ngx_str_t *value)
{
    yajl_val  v;

    v = ngx_acs_json_tree_get(obj, key);

    if (v == NULL || !YAJL_IS_STRING(v)) {
        return NGX_DECLINED;
    }

    value->data = (u_char *) v->u.string;
    value->len = ngx_strlen(v->u.string);

    return NGX_OK;
}


/*
 * For toast XML: the five entities; characters XML 1.0 does not allow
 * even escaped (controls other than tab, CR, LF) become spaces.
 */

size_t
ngx_acs_xml_escape_len(ngx_str_t *s)
{
    size_t   n;
    u_char  *p, *last;

    n = s->len;

    for (p = s->data, last = p + s->len; p < last; p++) {

        switch (*p) {

        case '&':
            n += sizeof("&amp;") - 2;
            break;

        case '<':
        case '>':
            n += sizeof("&lt;") - 2;
            break;

        case '"':
            n += sizeof("&quot;") - 2;
            break;

        case '\'':
            n += sizeof("&apos;") - 2;
            break;

        default:
            break;
        }
    }

    return n;
}


u_char *
ngx_acs_xml_escape(u_char *dst, ngx_str_t *s)
{
    u_char  *p, *last;

    for (p = s->data, last = p + s->len; p < last; p++) {

        switch (*p) {

        case '&':
            dst = ngx_cpymem(dst, "&amp;", sizeof("&amp;") - 1);
            break;

        case '<':
            dst = ngx_cpymem(dst, "&lt;", sizeof("&lt;") - 1);
            break;

        case '>':
            dst = ngx_cpymem(dst, "&gt;", sizeof("&gt;") - 1);
            break;

        case '"':
            dst = ngx_cpymem(dst, "&quot;", sizeof("&quot;") - 1);
            break;

        case '\'':
            dst = ngx_cpymem(dst, "&apos;", sizeof("&apos;") - 1);
            break;

        default:

            if ((*p < 0x20 && *p != '\t' && *p != '\r' && *p != '\n')
                || *p == 0x7f)
            {
                *dst++ = ' ';

            } else {
                *dst++ = *p;
            }
        }
    }

    return dst;
}


/*
 * The one JSON generator of the module, for answers and payloads alike:
 * yajl_gen over a pool, so no malloc() and nothing to free on any path.
 * Its status is kept in gen->rc; the first failure sticks and shows in
 * ngx_acs_gen_done().
 */

ngx_int_t
ngx_acs_gen_init(ngx_acs_gen_t *gen, ngx_pool_t *pool)
{
    yajl_alloc_funcs  af;

    gen->pool = pool;

    af.malloc = ngx_acs_yajl_malloc;
    af.realloc = ngx_acs_yajl_realloc;
    af.free = ngx_acs_yajl_free;
    af.ctx = pool;

    gen->rc = yajl_gen_status_ok;

    gen->g = yajl_gen_alloc(&af);
    if (gen->g == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the text, in the pool; the generator needs no freeing */

ngx_int_t
ngx_acs_gen_done(ngx_acs_gen_t *gen, ngx_str_t *out)
{
    size_t                len;
    const unsigned char  *buf;

    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_get_buf(gen->g, &buf, &len);
    }

    if (gen->rc != yajl_gen_status_ok) {
        return NGX_ERROR;
    }

    out->data = (u_char *) buf;
    out->len = len;

    return NGX_OK;
}


void
ngx_acs_gen_key(ngx_acs_gen_t *gen, char *key)
{
    ngx_acs_gen_cstr(gen, key);
}


void
ngx_acs_gen_str(ngx_acs_gen_t *gen, ngx_str_t *value)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_string(gen->g, value->len ? value->data
                                                     : (u_char *) "",
                                  value->len);
    }
}


void
ngx_acs_gen_cstr(ngx_acs_gen_t *gen, char *value)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_string(gen->g, (const unsigned char *) value,
                                  ngx_strlen(value));
    }
}


void
ngx_acs_gen_pair(ngx_acs_gen_t *gen, char *key, ngx_str_t *value)
{
    ngx_acs_gen_key(gen, key);
    ngx_acs_gen_str(gen, value);
}


void
ngx_acs_gen_int(ngx_acs_gen_t *gen, ngx_int_t n)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_integer(gen->g, n);
    }
}


void
ngx_acs_gen_map_open(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_map_open(gen->g);
    }
}


void
ngx_acs_gen_map_close(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_map_close(gen->g);
    }
}


void
ngx_acs_gen_num(ngx_acs_gen_t *gen, char *key, long long n)
{
    ngx_acs_gen_key(gen, key);

    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_integer(gen->g, n);
    }
}


void
ngx_acs_gen_array_open(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_array_open(gen->g);
    }
}


void
ngx_acs_gen_array_close(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_array_close(gen->g);
    }
}


/* the allocation functions keep the size in front of each block */

static void *
ngx_acs_yajl_malloc(void *ctx, size_t size)
{
    size_t  *p;

    p = ngx_palloc(ctx, sizeof(size_t) + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return p + 1;
}


static void *
ngx_acs_yajl_realloc(void *ctx, void *ptr, size_t size)
{
    void    *p;
    size_t   old;

    if (ptr == NULL) {
        return ngx_acs_yajl_malloc(ctx, size);
    }

    old = ((size_t *) ptr)[-1];

    if (size <= old) {
        return ptr;
    }

    p = ngx_acs_yajl_malloc(ctx, size);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, ptr, old);
    ngx_acs_yajl_free(ctx, ptr);

    return p;
}


static void
ngx_acs_yajl_free(void *ctx, void *ptr)
{
    if (ptr) {
        (void) ngx_pfree(ctx, (size_t *) ptr - 1);
    }
}
