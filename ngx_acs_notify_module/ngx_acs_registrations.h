
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The device registration REST API.
 */


#ifndef _NGX_ACS_REGISTRATIONS_H_INCLUDED_
#define _NGX_ACS_REGISTRATIONS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_acs_registrations_handler(ngx_http_request_t *r);


#endif /* _NGX_ACS_REGISTRATIONS_H_INCLUDED_ */
