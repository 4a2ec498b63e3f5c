
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * ACS-style HMAC-SHA256 request signing, for the registration API.
 */


#ifndef _NGX_ACS_HMAC_H_INCLUDED_
#define _NGX_ACS_HMAC_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * keys: the base64-decoded access keys (ngx_str_t), each tried in constant
 * time.  NGX_OK; NGX_DECLINED with *reason (no secret in it); NGX_ERROR:
 * out of memory or a library failure.
 */
ngx_int_t ngx_acs_hmac_verify(ngx_array_t *keys, ngx_str_t *method,
    ngx_str_t *path_query, ngx_str_t *date, ngx_str_t *host,
    ngx_str_t *content_hash, ngx_str_t *authorization, ngx_pool_t *pool,
    const char **reason);


#endif /* _NGX_ACS_HMAC_H_INCLUDED_ */
