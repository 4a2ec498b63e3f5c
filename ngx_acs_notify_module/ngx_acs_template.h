
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * acs_notify_template: payloads of the user's own, compiled at
 * configuration time, rendered from the event's message.
 */


#ifndef _NGX_ACS_TEMPLATE_H_INCLUDED_
#define _NGX_ACS_TEMPLATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_platform.h"
#include "ngx_acs_route.h"


typedef struct ngx_acs_template_s  ngx_acs_template_t;


/* acs_notify_template EVENT_TYPE PLATFORM PAYLOAD, checked and compiled */
char *ngx_acs_template_add(ngx_conf_t *cf, ngx_array_t **templates,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload);

/* the template of an event type for a platform (any platform: p NULL) */
ngx_acs_template_t *ngx_acs_template_find(ngx_array_t *templates,
    ngx_acs_route_rule_t *rule, ngx_acs_platform_t *p);

/*
 * The payload, from a message made with keep_event (ngx_acs_route.h).
 * NGX_OK, NGX_DECLINED (over the platform's limit) or NGX_ERROR.
 */
ngx_int_t ngx_acs_template_render(ngx_pool_t *pool, ngx_acs_template_t *tpl,
    ngx_acs_msg_t *msg, ngx_str_t *out);


#endif /* _NGX_ACS_TEMPLATE_H_INCLUDED_ */
