
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The paths of the registration API, under the location's prefix:
 * users/{rawId}[/devices[/{deviceId}]], the ids percent-encoded.
 */


#ifndef _NGX_ACS_REGPATH_H_INCLUDED_
#define _NGX_ACS_REGPATH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    ngx_str_t                   raw_id;
    ngx_str_t                   device_id;   /* empty: none in the path */
    ngx_uint_t                  devices;     /* unsigned:1, ".../devices" */
} ngx_acs_reg_path_t;


/*
 * The path between the location's prefix and the query string, as sent:
 * split on "/" first, then each segment percent-decoded into the pool, so
 * that a raw id may hold any byte, "/" included.  NGX_OK; NGX_DECLINED
 * when it names no resource of the API; NGX_ERROR: out of memory.
 */
ngx_int_t ngx_acs_reg_path_parse(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_acs_reg_path_t *path);

/*
 * NGX_OK when the ids are valid: a raw id of 1 to 256 bytes without space
 * or control character, a device id of [A-Za-z0-9._-]{1,64}; else
 * NGX_DECLINED with the error *code and *reason.
 */
ngx_int_t ngx_acs_reg_path_check(ngx_acs_reg_path_t *path,
    const char **code, const char **reason);


#endif /* _NGX_ACS_REGPATH_H_INCLUDED_ */
