
/*
 * The few nginx string and pool functions the plain-buffer code of the
 * module calls, for unit tests that link that code without an nginx binary.
 * Each does what its nginx namesake does for the inputs the tests use:
 * escaping follows nginx's NGX_ESCAPE_URI_COMPONENT table (all but A-Z a-z
 * 0-9 - . _ ~), unescaping is the type 0 of ngx_unescape_uri, ngx_sprintf
 * knows %V, %s, %T, %d and %ui; log lines are formatted and dropped.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <stdarg.h>
#include <strings.h>


void
ngx_strlow(u_char *dst, u_char *src, size_t n)
{
    while (n--) {
        *dst++ = (u_char) tolower(*src++);
    }
}


ngx_int_t
ngx_strncasecmp(u_char *s1, u_char *s2, size_t n)
{
    return strncasecmp((char *) s1, (char *) s2, n);
}


uintptr_t
ngx_escape_uri(u_char *dst, u_char *src, size_t size, ngx_uint_t type)
{
    static u_char  hex[] = "0123456789ABCDEF";
    uintptr_t      n;

    (void) type;

    for (n = 0; size; size--, src++) {
        if (isalnum(*src) || *src == '-' || *src == '.' || *src == '_'
            || *src == '~')
        {
            if (dst) {
                *dst++ = *src;
            }
            continue;
        }

        n++;

        if (dst) {
            *dst++ = '%';
            *dst++ = hex[*src >> 4];
            *dst++ = hex[*src & 0xf];
        }
    }

    return dst ? (uintptr_t) dst : n;
}


void
ngx_encode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    static u_char  b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    u_char        *d, *s;
    size_t         len;

    d = dst->data;
    s = src->data;
    len = src->len;

    while (len > 2) {
        *d++ = b64[(s[0] >> 2) & 0x3f];
        *d++ = b64[((s[0] & 3) << 4) | (s[1] >> 4)];
        *d++ = b64[((s[1] & 0x0f) << 2) | (s[2] >> 6)];
        *d++ = b64[s[2] & 0x3f];
        s += 3;
        len -= 3;
    }

    if (len) {
        *d++ = b64[(s[0] >> 2) & 0x3f];

        if (len == 1) {
            *d++ = b64[(s[0] & 3) << 4];
            *d++ = '=';

        } else {
            *d++ = b64[((s[0] & 3) << 4) | (s[1] >> 4)];
            *d++ = b64[(s[1] & 0x0f) << 2];
        }

        *d++ = '=';
    }

    dst->len = d - dst->data;
}


/* pools: every allocation on a list, freed with the pool; cleanups run */

typedef struct ngx_shim_block_s  ngx_shim_block_t;

struct ngx_shim_block_s {
    ngx_shim_block_t  *next;
    size_t             size;
    u_char             data[];
};


/*
 * The log of pools made without one: debug level, so that every debug line
 * of the code under test is formatted (its arguments read), then dropped.
 */

static ngx_log_t  ngx_shim_log;


void ngx_cdecl
ngx_log_error_core(ngx_uint_t level, ngx_log_t *log, ngx_err_t err,
    const char *fmt, ...)
{
    u_char   buf[NGX_MAX_ERROR_STR];
    va_list  args;

    (void) level;
    (void) log;
    (void) err;

    va_start(args, fmt);
    (void) ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);
}


ngx_pool_t *
ngx_create_pool(size_t size, ngx_log_t *log)
{
    ngx_pool_t  *p;

    (void) size;

    if (log == NULL) {
        ngx_shim_log.log_level = NGX_LOG_DEBUG_ALL;
        log = &ngx_shim_log;
    }

    p = calloc(1, sizeof(ngx_pool_t));
    if (p) {
        p->log = log;
    }

    return p;
}


void
ngx_destroy_pool(ngx_pool_t *pool)
{
    ngx_pool_cleanup_t  *c;
    ngx_shim_block_t    *b, *n;

    for (c = pool->cleanup; c; c = c->next) {
        if (c->handler) {
            c->handler(c->data);
        }
    }

    for (b = (ngx_shim_block_t *) pool->chain; b; b = n) {
        n = b->next;
        free(b);
    }

    free(pool);
}


void *
ngx_palloc(ngx_pool_t *pool, size_t size)
{
    ngx_shim_block_t  *b;

    b = malloc(sizeof(ngx_shim_block_t) + size);
    if (b == NULL) {
        return NULL;
    }

    b->size = size;
    b->next = (ngx_shim_block_t *) pool->chain;
    pool->chain = (ngx_chain_t *) b;

    return b->data;
}


void *
ngx_pnalloc(ngx_pool_t *pool, size_t size)
{
    return ngx_palloc(pool, size);
}


void *
ngx_pcalloc(ngx_pool_t *pool, size_t size)
{
    void  *p;

    p = ngx_palloc(pool, size);
    if (p) {
        memset(p, 0, size);
    }

    return p;
}


ngx_pool_cleanup_t *
ngx_pool_cleanup_add(ngx_pool_t *p, size_t size)
{
    ngx_pool_cleanup_t  *c;

    c = ngx_palloc(p, sizeof(ngx_pool_cleanup_t));
    if (c == NULL) {
        return NULL;
    }

    c->data = size ? ngx_palloc(p, size) : NULL;
    c->handler = NULL;
    c->next = p->cleanup;
    p->cleanup = c;

    return c;
}


void *
ngx_array_push(ngx_array_t *a)
{
    void  *new;

    if (a->nelts == a->nalloc) {
        new = ngx_palloc(a->pool, 2 * a->size * a->nalloc);
        if (new == NULL) {
            return NULL;
        }

        memcpy(new, a->elts, a->size * a->nalloc);
        a->elts = new;
        a->nalloc *= 2;
    }

    return (u_char *) a->elts + a->size * a->nelts++;
}


/*
 * The formats the module's plain-buffer code uses: %V %s %*s %d %i %l
 * %ui %uz %z %O %M %T %Z %%, bounded by last.
 */

u_char *
ngx_vslprintf(u_char *buf, u_char *last, const char *fmt, va_list args)
{
    char        tmp[64];
    u_char     *s;
    size_t      len;
    ngx_str_t  *v;
    int         star;

    while (*fmt && buf < last) {

        if (*fmt != '%') {
            *buf++ = (u_char) *fmt++;
            continue;
        }

        fmt++;
        star = 0;
        len = 0;

        if (*fmt == '*') {
            star = 1;
            len = va_arg(args, size_t);
            fmt++;
        }

        s = (u_char *) tmp;
        tmp[0] = '\0';

        switch (*fmt++) {
        case 'V':
            v = va_arg(args, ngx_str_t *);
            s = v->data;
            len = v->len;
            star = 1;
            break;
        case 's':
            s = va_arg(args, u_char *);
            if (!star) {
                len = strlen((char *) s);
            }
            star = 1;
            break;
        case 'd':
            snprintf(tmp, sizeof(tmp), "%d", va_arg(args, int));
            break;
        case 'i':
            snprintf(tmp, sizeof(tmp), "%ld", (long) va_arg(args, ngx_int_t));
            break;
        case 'l':
            snprintf(tmp, sizeof(tmp), "%ld", va_arg(args, long));
            break;
        case 'z':
            snprintf(tmp, sizeof(tmp), "%ld", (long) va_arg(args, ssize_t));
            break;
        case 'O':
            snprintf(tmp, sizeof(tmp), "%lld", (long long) va_arg(args, off_t));
            break;
        case 'M':
            snprintf(tmp, sizeof(tmp), "%lu",
                     (unsigned long) va_arg(args, ngx_msec_t));
            break;
        case 'T':
            snprintf(tmp, sizeof(tmp), "%ld", (long) va_arg(args, time_t));
            break;
        case 'u':
            if (*fmt == 'z') {
                snprintf(tmp, sizeof(tmp), "%zu", va_arg(args, size_t));
            } else {
                snprintf(tmp, sizeof(tmp), "%lu",
                         (unsigned long) va_arg(args, ngx_uint_t));
            }
            fmt++;
            break;
        case 'Z':
            *buf++ = '\0';
            continue;
        default:
            *buf++ = '%';
            continue;
        }

        if (!star) {
            len = strlen(tmp);
        }

        len = ngx_min(len, (size_t) (last - buf));
        buf = ngx_cpymem(buf, s, len);
    }

    return buf;
}


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, (void *) -1, fmt, args);
    va_end(args);

    return p;
}


u_char * ngx_cdecl
ngx_snprintf(u_char *buf, size_t max, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(buf, buf + max, fmt, args);
    va_end(args);

    return p;
}


/* nginx's decoder: the URL alphabet, stops at "=", a lone 6-bit tail fails */

ngx_int_t
ngx_decode_base64url(ngx_str_t *dst, ngx_str_t *src)
{
    size_t   len, i;
    u_char  *d, v[4];
    int      c, j;

    for (len = 0; len < src->len && src->data[len] != '='; len++) {
        c = src->data[len];
        if (!(isalnum(c) || c == '-' || c == '_')) {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;

    for (i = 0; i < len; i += 4) {
        for (j = 0; j < 4; j++) {
            c = (i + j < len) ? src->data[i + j] : 'A';
            v[j] = (c >= 'A' && c <= 'Z') ? c - 'A'
                   : (c >= 'a' && c <= 'z') ? c - 'a' + 26
                   : (c >= '0' && c <= '9') ? c - '0' + 52
                   : (c == '-') ? 62 : 63;
        }

        *d++ = (u_char) (v[0] << 2 | v[1] >> 4);
        if (i + 2 < len) {
            *d++ = (u_char) (v[1] << 4 | v[2] >> 2);
        }
        if (i + 3 < len) {
            *d++ = (u_char) (v[2] << 6 | v[3]);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


/* type 0: "%XX" decoded; a "%" without two hex digits after it is dropped */

void
ngx_unescape_uri(u_char **dst, u_char **src, size_t size, ngx_uint_t type)
{
    u_char  *d, *s, *last;
    int      hi, lo;

    (void) type;

    d = *dst;
    s = *src;
    last = s + size;

    while (s < last) {
        if (*s != '%') {
            *d++ = *s++;
            continue;
        }

        s++;

        if (s < last && isxdigit(*s)) {
            hi = isdigit(*s) ? *s - '0' : (tolower(*s) - 'a' + 10);
            s++;

            if (s < last && isxdigit(*s)) {
                lo = isdigit(*s) ? *s - '0' : (tolower(*s) - 'a' + 10);
                *d++ = (u_char) (hi << 4 | lo);
                s++;
            }
        }
    }

    *dst = d;
    *src = s;
}


/* the standard alphabet; padding may be left out; other bytes fail */

ngx_int_t
ngx_decode_base64(ngx_str_t *dst, ngx_str_t *src)
{
    static u_char  b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    u_char        *d, *c;
    size_t         len, i;
    uint32_t       acc;
    ngx_uint_t     bits;

    for (len = 0; len < src->len && src->data[len] != '='; len++) {
        if (src->data[len] == '\0'
            || strchr((char *) b64, src->data[len]) == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (len % 4 == 1) {
        return NGX_ERROR;
    }

    d = dst->data;
    acc = 0;
    bits = 0;

    for (i = 0; i < len; i++) {
        c = (u_char *) strchr((char *) b64, src->data[i]);
        acc = (acc << 6) | (uint32_t) (c - b64);
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            *d++ = (u_char) (acc >> bits);
        }
    }

    dst->len = d - dst->data;

    return NGX_OK;
}


u_char *
ngx_hex_dump(u_char *dst, u_char *src, size_t len)
{
    static u_char  hex[] = "0123456789abcdef";

    while (len--) {
        *dst++ = hex[*src >> 4];
        *dst++ = hex[*src++ & 0xf];
    }

    return dst;
}


u_char *
ngx_pstrdup(ngx_pool_t *pool, ngx_str_t *src)
{
    u_char  *dst;

    dst = ngx_pnalloc(pool, src->len);
    if (dst == NULL) {
        return NULL;
    }

    ngx_memcpy(dst, src->data, src->len);

    return dst;
}


ngx_array_t *
ngx_array_create(ngx_pool_t *p, ngx_uint_t n, size_t size)
{
    ngx_array_t  *a;

    a = ngx_palloc(p, sizeof(ngx_array_t));
    if (a == NULL) {
        return NULL;
    }

    if (ngx_array_init(a, p, n, size) != NGX_OK) {
        return NULL;
    }

    return a;
}


/* memory goes with the pool, as nginx does for small blocks */

ngx_int_t
ngx_pfree(ngx_pool_t *pool, void *p)
{
    (void) pool;
    (void) p;

    return NGX_DECLINED;
}
