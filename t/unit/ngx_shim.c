
/*
 * The few nginx string functions the plain-buffer code of the module calls,
 * for unit tests that link that code without an nginx binary.  Each does
 * what its nginx namesake does for the inputs the tests use: escaping
 * follows nginx's NGX_ESCAPE_URI_COMPONENT table (all but A-Z a-z 0-9 - .
 * _ ~), ngx_sprintf knows %V, %s, %T, %d and %ui.
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


u_char * ngx_cdecl
ngx_sprintf(u_char *buf, const char *fmt, ...)
{
    va_list     args;
    ngx_str_t  *v;
    char       *s;

    va_start(args, fmt);

    while (*fmt) {
        if (*fmt != '%') {
            *buf++ = (u_char) *fmt++;
            continue;
        }

        fmt++;

        switch (*fmt++) {
        case 'V':
            v = va_arg(args, ngx_str_t *);
            buf = ngx_cpymem(buf, v->data, v->len);
            break;
        case 's':
            s = va_arg(args, char *);
            buf = ngx_cpymem(buf, s, strlen(s));
            break;
        case 'T':
            buf += sprintf((char *) buf, "%ld", (long) va_arg(args, time_t));
            break;
        case 'd':
            buf += sprintf((char *) buf, "%d", va_arg(args, int));
            break;
        case 'u':
            fmt++;  /* %ui */
            buf += sprintf((char *) buf, "%lu",
                           (unsigned long) va_arg(args, ngx_uint_t));
            break;
        }
    }

    va_end(args);

    return buf;
}
