
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Dispatch: the pushes of one delivery, sent to Notification Hubs with
 * retries, and the answer Event Grid gets when nothing can be lost.
 */


#ifndef _NGX_ACS_DISPATCH_H_INCLUDED_
#define _NGX_ACS_DISPATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * Routes, looks up, renders and starts the pushes of the events; answers
 * the request (now, or when the pushes are final); returns what the body
 * handler passes to ngx_http_finalize_request(), or NGX_DONE when the
 * answer comes later.
 */
ngx_int_t ngx_acs_dispatch(ngx_http_request_t *r, ngx_array_t *events);

ngx_int_t ngx_acs_dispatch_init_process(ngx_cycle_t *cycle,
    ngx_uint_t connections);


#endif /* _NGX_ACS_DISPATCH_H_INCLUDED_ */
