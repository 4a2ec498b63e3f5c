
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The module's configuration, main and per location, as the directives
 * (ngx_acs_notify_module.c) make it: what the handlers of the features
 * read.  The helpers below them never include this.
 */


#ifndef _NGX_ACS_NOTIFY_H_INCLUDED_
#define _NGX_ACS_NOTIFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_auth.h"
#include "ngx_acs_store.h"
#include "ngx_acs_render.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_dedup.h"
#include "ngx_acs_trace.h"


#define NGX_ACS_ACK_DISPATCHED  0
#define NGX_ACS_ACK_ACCEPTED    1


typedef struct {
    ngx_acs_store_t            *store;      /* acs_notify_registry */
    ngx_array_t                 hubs;       /* of ngx_acs_hub_t */
    ngx_array_t                 entras;     /* of ngx_acs_entra_t * */
    ngx_acs_dedup_t            *dedup;
    ngx_acs_trace_t            *trace;      /* acs_notify_trace, or NULL */
    ngx_uint_t                  queue_size;
    void                       *stats;      /* the status zone's data */
} ngx_http_acs_notify_main_conf_t;


typedef struct {
    ngx_flag_t                  eventgrid;
    ngx_str_t                   hub_name;
    ngx_str_t                   voip_hub_name;
    ngx_acs_hub_t              *hub;
    ngx_acs_hub_t              *voip_hub;
    ngx_uint_t                  ack;
    ngx_msec_t                  dispatch_timeout;
    ngx_msec_t                  call_ttl;   /* 0: off */
    ngx_msec_t                  max_age;    /* 0: off */
    ngx_acs_render_conf_t       render;

    ngx_flag_t                  registrations;
    ngx_flag_t                  status;
    ngx_array_t                *hmac_keys;  /* of ngx_str_t, decoded */

    ngx_http_complex_value_t   *secret;     /* what the sender presents */
    ngx_array_t                *secrets;    /* of ngx_acs_secret_t */
    ngx_flag_t                  secret_in_query;  /* $arg_*: in the URL */
    ngx_acs_entra_t            *entra;

    ngx_array_t                *topics;     /* of ngx_acs_pattern_t */
    ngx_array_t                *subscriptions;

    ngx_uint_t                  log_level;
} ngx_http_acs_notify_loc_conf_t;


#endif /* _NGX_ACS_NOTIFY_H_INCLUDED_ */
