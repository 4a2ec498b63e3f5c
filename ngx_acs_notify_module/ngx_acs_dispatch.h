
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Dispatch: the pushes of the deliveries, queued in front of libcurl and
 * sent to Notification Hubs with retries, and the answer Event Grid gets
 * when nothing can be lost.
 */


#ifndef _NGX_ACS_DISPATCH_H_INCLUDED_
#define _NGX_ACS_DISPATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/*
 * Takes the events of a delivery: routes them, looks their recipients up,
 * queues their pushes and answers the request (now, or when the pushes are
 * final or the deadline comes).  Returns what the body handler passes to
 * ngx_http_finalize_request(), or NGX_DONE when the answer comes later.
 */
ngx_int_t ngx_acs_dispatch(ngx_http_request_t *r, ngx_array_t *events);

ngx_int_t ngx_acs_dispatch_init_process(ngx_cycle_t *cycle);
void ngx_acs_dispatch_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_ACS_DISPATCH_H_INCLUDED_ */
