
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Configuration and per-request state shared by the module's stages.
 */


#ifndef _NGX_ACS_NOTIFY_H_INCLUDED_
#define _NGX_ACS_NOTIFY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_auth.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_render.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_dedup.h"


#define NGX_ACS_ACK_DISPATCHED  0
#define NGX_ACS_ACK_ACCEPTED    1


typedef struct {
    ngx_str_t                   value;      /* lower case */
    ngx_uint_t                  prefix;     /* unsigned:1, ended with "*" */
} ngx_acs_pattern_t;


typedef struct {
    ngx_acs_registry_t         *registry;
    ngx_array_t                 hubs;       /* of ngx_acs_hub_t */
    ngx_array_t                 entras;     /* of ngx_acs_entra_t * */
    ngx_acs_dedup_t            *dedup;
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


typedef enum {
    NGX_ACS_AEG_NOTIFICATION = 0,
    NGX_ACS_AEG_VALIDATION,
    NGX_ACS_AEG_DELETION
} ngx_acs_aeg_type_e;


typedef struct {
    ngx_uint_t                  aeg_type;   /* ngx_acs_aeg_type_e */
    ngx_uint_t                  registration;   /* unsigned:1 */
    ngx_uint_t                  tokenless;  /* unsigned:1 */

    ngx_uint_t                  events;
    ngx_uint_t                  pushes;
    ngx_uint_t                  ignored;
    ngx_uint_t                  duplicates;
    ngx_str_t                   result;
    ngx_str_t                   event_id;   /* the first event's id */

    ngx_uint_t                  status;     /* of a refusal */
    const char                 *code;
    ngx_str_t                   message;

    void                       *data;       /* the handler's own state */
} ngx_http_acs_notify_ctx_t;


extern ngx_module_t  ngx_http_acs_notify_module;


ngx_int_t ngx_acs_conf_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *out);
ngx_uint_t ngx_acs_conf_param(ngx_str_t *arg, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_acs_pattern_match(ngx_array_t *patterns, ngx_str_t *value);
ngx_http_acs_notify_ctx_t *ngx_acs_ctx(ngx_http_request_t *r);
ngx_table_elt_t *ngx_acs_header(ngx_http_request_t *r, const char *name);
ngx_int_t ngx_acs_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_acs_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);


#endif /* _NGX_ACS_NOTIFY_H_INCLUDED_ */
