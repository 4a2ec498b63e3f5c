
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_prom.h"


#define NGX_ACS_PROM_SIZE  16384    /* the text's first buffer */


ngx_int_t
ngx_acs_prom_init(ngx_acs_prom_t *w, ngx_pool_t *pool)
{
    w->pool = pool;
    w->error = 0;

    w->start = ngx_pnalloc(pool, NGX_ACS_PROM_SIZE);
    if (w->start == NULL) {
        return NGX_ERROR;
    }

    w->pos = w->start;
    w->end = w->start + NGX_ACS_PROM_SIZE;

    return NGX_OK;
}


/*
 * A text that may not have fit (it reached the end of the buffer) is
 * written again into a buffer twice as large.
 */

void
ngx_acs_prom_printf(ngx_acs_prom_t *w, const char *fmt, ...)
{
    u_char   *p, *start;
    size_t    size;
    va_list   args;

    while (!w->error) {
        va_start(args, fmt);
        p = ngx_vslprintf(w->pos, w->end, fmt, args);
        va_end(args);

        if (p < w->end) {
            w->pos = p;
            return;
        }

        size = 2 * (w->end - w->start);

        start = ngx_pnalloc(w->pool, size);
        if (start == NULL) {
            w->error = 1;
            return;
        }

        p = ngx_cpymem(start, w->start, w->pos - w->start);

        w->start = start;
        w->pos = p;
        w->end = start + size;
    }
}


ngx_int_t
ngx_acs_prom_done(ngx_acs_prom_t *w, ngx_str_t *out)
{
    if (w->error) {
        return NGX_ERROR;
    }

    out->data = w->start;
    out->len = w->pos - w->start;

    return NGX_OK;
}
