
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The built-in payloads and the request headers of a push, one builder per
 * platform (the platform table, ngx_acs_platform.h, names them), from the
 * event's message (ngx_acs_route.h).  No HTTP.
 */


#ifndef _NGX_ACS_RENDER_H_INCLUDED_
#define _NGX_ACS_RENDER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_platform.h"
#include "ngx_acs_route.h"
#include "ngx_acs_device.h"
#include "ngx_acs_curl.h"


#define NGX_ACS_PUSH_HEADERS  4


typedef struct {
    ngx_flag_t                  preview;       /* acs_notify_preview */
    ngx_array_t                *templates;     /* acs_notify_template */
} ngx_acs_render_conf_t;


/*
 * How long a push may live, when its event sets a limit (a call: its ring
 * time left), as the platforms say it: seconds, and the second it ends.
 */

typedef struct {
    time_t                      ttl;           /* -1: no limit */
    time_t                      until;         /* since the epoch */
    u_char                      text[NGX_TIME_T_LEN];   /* a header's */
} ngx_acs_expiry_t;


struct ngx_acs_render_s {
    ngx_pool_t                 *pool;
    ngx_acs_platform_t         *platform;
    ngx_acs_msg_t              *msg;
    ngx_str_t                   title;         /* shortened to fit */
    ngx_str_t                   text;
    time_t                      ttl;           /* a call's: seconds left,
                                                  -1 when not limited */

    /* the headers' */
    ngx_acs_device_t           *dev;
    ngx_acs_expiry_t           *exp;
    ngx_acs_header_t           *header;        /* the next to write */
};


/*
 * The built-in payload of the message for the platform, its texts
 * shortened until it fits the platform's limit; ttl: the seconds the push
 * may live, or -1 (a platform whose payload says it: expiry_in_body).
 * A VoIP-only platform takes calls alone.
 * NGX_OK, NGX_DECLINED (it cannot fit, or the platform takes no such
 * push) or NGX_ERROR.
 */
ngx_int_t ngx_acs_render(ngx_pool_t *pool, ngx_acs_platform_t *p,
    ngx_acs_msg_t *msg, time_t ttl, ngx_str_t *body);

/*
 * The headers of a push for the device beyond those every push has (the
 * values point into the message, the device, exp and static memory);
 * returns how many were written to h, at most NGX_ACS_PUSH_HEADERS.
 */
ngx_uint_t ngx_acs_render_headers(ngx_acs_platform_t *p, ngx_acs_msg_t *msg,
    ngx_acs_device_t *dev, ngx_acs_expiry_t *exp, ngx_acs_header_t *h);

ngx_int_t ngx_acs_build_apns(ngx_acs_render_t *rd, ngx_str_t *out);
ngx_int_t ngx_acs_build_voip(ngx_acs_render_t *rd, ngx_str_t *out);
ngx_int_t ngx_acs_build_fcmv1(ngx_acs_render_t *rd, ngx_str_t *out);
ngx_int_t ngx_acs_build_wns(ngx_acs_render_t *rd, ngx_str_t *out);
ngx_int_t ngx_acs_build_browser(ngx_acs_render_t *rd, ngx_str_t *out);

void ngx_acs_headers_apns(ngx_acs_render_t *rd);
void ngx_acs_headers_voip(ngx_acs_render_t *rd);
void ngx_acs_headers_wns(ngx_acs_render_t *rd);
void ngx_acs_headers_browser(ngx_acs_render_t *rd);


#endif /* _NGX_ACS_RENDER_H_INCLUDED_ */
