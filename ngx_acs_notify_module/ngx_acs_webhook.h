
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The Event Grid webhook: handshakes, authentication at the edge, parsing
 * of deliveries and the answer Event Grid gets.
 */


#ifndef _NGX_ACS_WEBHOOK_H_INCLUDED_
#define _NGX_ACS_WEBHOOK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


ngx_int_t ngx_acs_webhook_handler(ngx_http_request_t *r);


#endif /* _NGX_ACS_WEBHOOK_H_INCLUDED_ */
