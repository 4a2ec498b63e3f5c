
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The Prometheus text of the status page, written into a buffer that
 * grows: no count of lines or length of a line can overflow it.
 */


#ifndef _NGX_ACS_PROM_H_INCLUDED_
#define _NGX_ACS_PROM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    ngx_pool_t                 *pool;
    u_char                     *start;
    u_char                     *pos;
    u_char                     *end;
    ngx_uint_t                  error;     /* unsigned:1, out of memory */
} ngx_acs_prom_t;


ngx_int_t ngx_acs_prom_init(ngx_acs_prom_t *w, ngx_pool_t *pool);

/* text at the end, as ngx_sprintf() writes it */
void ngx_acs_prom_printf(ngx_acs_prom_t *w, const char *fmt, ...);

/* the text written: NGX_OK, or NGX_ERROR when memory ran out */
ngx_int_t ngx_acs_prom_done(ngx_acs_prom_t *w, ngx_str_t *out);


#endif /* _NGX_ACS_PROM_H_INCLUDED_ */
