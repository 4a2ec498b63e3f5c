
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The shapes of the platforms' payloads, for the platform table
 * (ngx_acs_shape_pt, ngx_acs_platform.h).
 */


#ifndef _NGX_ACS_SHAPE_H_INCLUDED_
#define _NGX_ACS_SHAPE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


char *ngx_acs_shape_apns(ngx_pool_t *pool, ngx_str_t *payload);
char *ngx_acs_shape_fcmv1(ngx_pool_t *pool, ngx_str_t *payload);
char *ngx_acs_shape_toast(ngx_pool_t *pool, ngx_str_t *payload);
char *ngx_acs_shape_json(ngx_pool_t *pool, ngx_str_t *payload);


#endif /* _NGX_ACS_SHAPE_H_INCLUDED_ */
