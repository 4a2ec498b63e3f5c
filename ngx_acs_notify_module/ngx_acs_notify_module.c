
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The module: directives, configuration, variables.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_conf.h"
#include "ngx_acs_http.h"
#include "ngx_acs_notify.h"
#include "ngx_acs_webhook.h"
#include "ngx_acs_registrations.h"
#include "ngx_acs_dispatch.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_template.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_CALL_TTL        120000         /* ACS rings 2 minutes */
#define NGX_ACS_CALL_TTL_MAX    3600000
#define NGX_ACS_MAX_AGE_MAX     (7 * 86400000)


static ngx_int_t ngx_http_acs_notify_add_variables(ngx_conf_t *cf);
static void *ngx_http_acs_notify_create_main_conf(ngx_conf_t *cf);
static ngx_int_t ngx_http_acs_notify_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_acs_notify_init_process(ngx_cycle_t *cycle);
static void ngx_http_acs_notify_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_acs_notify_registry(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_registrations(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_acs_notify_hmac_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_hub(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_dedup(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_trace(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_template(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_acs_notify_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_acs_notify_log_handler(ngx_http_request_t *r);
static char *ngx_http_acs_notify_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_acs_hub_t *ngx_http_acs_notify_find_hub(ngx_conf_t *cf,
    ngx_http_acs_notify_main_conf_t *amcf, ngx_str_t *name);
static void *ngx_http_acs_notify_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_acs_notify_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_acs_notify_eventgrid(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_secret(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_acs_notify_entra(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_acs_notify_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_conf_enum_t  ngx_http_acs_notify_acks[] = {
    { ngx_string("dispatched"), NGX_ACS_ACK_DISPATCHED },
    { ngx_string("accepted"), NGX_ACS_ACK_ACCEPTED },
    { ngx_null_string, 0 }
};


static ngx_conf_num_bounds_t  ngx_http_acs_notify_queue_bounds = {
    ngx_conf_check_num_bounds, 1, 1000000
};


static ngx_conf_enum_t  ngx_http_acs_notify_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_acs_notify_commands[] = {

    { ngx_string("acs_notify_hub"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_acs_notify_hub,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_dedup"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_acs_notify_dedup,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_trace"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_acs_notify_trace,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_main_conf_t, queue_size),
      &ngx_http_acs_notify_queue_bounds },

    { ngx_string("acs_notify_ack"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, ack),
      &ngx_http_acs_notify_acks },

    { ngx_string("acs_notify_dispatch_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, dispatch_timeout),
      NULL },

    { ngx_string("acs_notify_call_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_acs_conf_set_msec_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, call_ttl),
      NULL },

    { ngx_string("acs_notify_max_age"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_acs_conf_set_msec_off_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, max_age),
      NULL },

    { ngx_string("acs_notify_preview"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, render.preview),
      NULL },

    { ngx_string("acs_notify_template"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE3,
      ngx_http_acs_notify_template,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_eventgrid"),
      NGX_HTTP_LOC_CONF|NGX_CONF_ANY,
      ngx_http_acs_notify_eventgrid,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_acs_notify_secret,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_entra"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_acs_notify_entra,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_topics"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_acs_conf_set_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, topics),
      NULL },

    { ngx_string("acs_notify_subscriptions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_acs_conf_set_patterns,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, subscriptions),
      NULL },

    { ngx_string("acs_notify_registry"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_acs_notify_registry,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_registrations"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_acs_notify_registrations,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_acs_notify_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_hmac_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_acs_notify_hmac_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("acs_notify_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_acs_notify_loc_conf_t, log_level),
      &ngx_http_acs_notify_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_acs_notify_module_ctx = {
    ngx_http_acs_notify_add_variables,     /* preconfiguration */
    ngx_http_acs_notify_init,              /* postconfiguration */

    ngx_http_acs_notify_create_main_conf,  /* create main configuration */
    ngx_http_acs_notify_init_main_conf,    /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_acs_notify_create_loc_conf,   /* create location configuration */
    ngx_http_acs_notify_merge_loc_conf     /* merge location configuration */
};


ngx_module_t  ngx_http_acs_notify_module = {
    NGX_MODULE_V1,
    &ngx_http_acs_notify_module_ctx,       /* module context */
    ngx_http_acs_notify_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_acs_notify_init_module,       /* init module */
    ngx_http_acs_notify_init_process,      /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_acs_notify_exit_process,      /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


enum {
    NGX_ACS_VAR_EVENTS = 0,
    NGX_ACS_VAR_PUSHES,
    NGX_ACS_VAR_RESULT,
    NGX_ACS_VAR_EVENT_ID,
    NGX_ACS_VAR_STALE
};


static ngx_http_variable_t  ngx_http_acs_notify_vars[] = {

    { ngx_string("acs_notify_events"), NULL, ngx_http_acs_notify_variable,
      NGX_ACS_VAR_EVENTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("acs_notify_pushes"), NULL, ngx_http_acs_notify_variable,
      NGX_ACS_VAR_PUSHES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("acs_notify_result"), NULL, ngx_http_acs_notify_variable,
      NGX_ACS_VAR_RESULT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("acs_notify_event_id"), NULL, ngx_http_acs_notify_variable,
      NGX_ACS_VAR_EVENT_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("acs_notify_stale"), NULL, ngx_http_acs_notify_variable,
      NGX_ACS_VAR_STALE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_acs_notify_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_acs_notify_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_acs_notify_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_str_t                  *s;
    ngx_uint_t                  n;
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_ACS_VAR_EVENTS:
    case NGX_ACS_VAR_PUSHES:
    case NGX_ACS_VAR_STALE:
        n = (data == NGX_ACS_VAR_EVENTS) ? ctx->events
            : (data == NGX_ACS_VAR_PUSHES) ? ctx->pushes : ctx->stale;

        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(p, "%ui", n) - p;
        v->data = p;
        break;

    default:
        s = (data == NGX_ACS_VAR_RESULT) ? ngx_acs_result_name(ctx->result)
                                         : &ctx->event_id;

        if (s == NULL || s->len == 0) {
            v->not_found = 1;
            return NGX_OK;
        }

        v->len = s->len;
        v->data = s->data;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static void *
ngx_http_acs_notify_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_acs_notify_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->hubs, cf->pool, 2, sizeof(ngx_acs_hub_t))
        != NGX_OK
        || ngx_array_init(&amcf->entras, cf->pool, 1,
                          sizeof(ngx_acs_entra_t *))
           != NGX_OK)
    {
        return NULL;
    }

    amcf->queue_size = NGX_CONF_UNSET_UINT;

    return amcf;
}


static char *
ngx_http_acs_notify_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_acs_notify_main_conf_t *amcf = conf;

    ngx_conf_init_uint_value(amcf->queue_size, 10000);

    if (amcf->store
        && ngx_acs_store_init_conf(cf, amcf->store, &amcf->hubs) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_acs_stats_init_conf(cf, amcf->hubs.nelts, &amcf->stats)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    /* pushes are de-duplicated by default: 8m, 24h */

    if (amcf->hubs.nelts && amcf->dedup == NULL) {
        amcf->dedup = ngx_acs_dedup_create(cf, 8 * 1024 * 1024, 86400);
        if (amcf->dedup == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_acs_notify_init_module(ngx_cycle_t *cycle)
{
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_acs_notify_module);

    if (amcf == NULL || amcf->store == NULL) {
        return NGX_OK;
    }

    return ngx_acs_store_init_module(cycle, amcf->store);
}


static ngx_int_t
ngx_http_acs_notify_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i, n, cap, per_host, connections;
    ngx_acs_hub_t                    *hub;
    ngx_acs_entra_t                 **entra;
    ngx_http_acs_notify_main_conf_t  *amcf;

    /*
     * the cache manager and loader run init_process too, and serve no
     * request: no device store, no libcurl pool for them
     */

    if (ngx_process != NGX_PROCESS_WORKER && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_acs_notify_module);

    if (amcf == NULL) {
        return NGX_OK;
    }

    if (amcf->stats) {
        ngx_acs_stats_init_process(amcf->stats);
    }

    ngx_acs_trace_init_process(amcf->trace);

    ngx_acs_sha256_init_process();

    /*
     * One libcurl client per worker, for the hubs and the key sets fetched
     * over https: it keeps a connection of each idle between requests
     */

    hub = amcf->hubs.elts;
    entra = amcf->entras.elts;
    per_host = 0;
    connections = 0;
    cap = ngx_acs_hub_conns_cap(cycle);

    for (i = 0; i < amcf->hubs.nelts; i++) {
        if (ngx_acs_hub_init_process(&hub[i], cycle->log) != NGX_OK) {
            return NGX_ERROR;
        }

        n = ngx_min(hub[i].max_connections, cap);

        if (n < hub[i].max_connections && ngx_worker == 0) {
            ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                          "acs_notify_hub \"%V\": %ui connections a worker "
                          "at most, not %ui: each takes one of "
                          "worker_connections and two open files",
                          &hub[i].name, n, hub[i].max_connections);
        }

        per_host = ngx_max(per_host, n);
        connections += n;
    }

    for (i = 0; i < amcf->entras.nelts; i++) {
        connections += ngx_acs_entra_remote(entra[i]);
    }

    if (connections
        && ngx_acs_curl_init_process(cycle, ngx_max(per_host, 1),
                                     connections)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (amcf->hubs.nelts && ngx_acs_dispatch_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (amcf->dedup) {
        ngx_acs_dedup_init_process(amcf->dedup, cycle->log);
    }

    for (i = 0; i < amcf->entras.nelts; i++) {
        if (ngx_acs_entra_init_process(entra[i], cycle) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (amcf->store
        && ngx_acs_store_init_process(cycle, amcf->store) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_acs_notify_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_acs_hub_t                    *hub;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_acs_notify_module);

    if (amcf == NULL) {
        return;
    }

    ngx_acs_sha256_exit_process();

    if (amcf->hubs.nelts) {
        ngx_acs_dispatch_exit_process(cycle);
    }

    if (amcf->dedup) {
        ngx_acs_dedup_exit_process(amcf->dedup);
    }

    /* a no-op where init_process made no client */
    ngx_acs_curl_exit_process(cycle);

    hub = amcf->hubs.elts;
    for (i = 0; i < amcf->hubs.nelts; i++) {
        ngx_acs_hub_exit_process(&hub[i]);
    }

    if (amcf->store) {
        ngx_acs_store_exit_process(amcf->store);
    }

    ngx_acs_stats_exit_process();
}


static ngx_int_t
ngx_http_acs_notify_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_acs_notify_log_handler;

    return NGX_OK;
}


/* every request of the module's locations is counted once, when it ends */

static ngx_int_t
ngx_http_acs_notify_log_handler(ngx_http_request_t *r)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ctx == NULL || r != r->main) {
        return NGX_OK;
    }

    if (ctx->registration) {
        ngx_acs_stats_registration(r->method, r->headers_out.status);
        return NGX_OK;
    }

    ngx_acs_stats_request(ctx->result);

    return NGX_OK;
}


static void *
ngx_http_acs_notify_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_acs_notify_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_acs_notify_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->secret = NULL;
     *     conf->secrets = NULL;
     *     conf->secret_in_query = 0;
     */

    conf->eventgrid = NGX_CONF_UNSET;
    conf->ack = NGX_CONF_UNSET_UINT;
    conf->dispatch_timeout = NGX_CONF_UNSET_MSEC;
    conf->call_ttl = NGX_CONF_UNSET_MSEC;
    conf->max_age = NGX_CONF_UNSET_MSEC;
    conf->render.preview = NGX_CONF_UNSET;
    conf->render.templates = NGX_CONF_UNSET_PTR;
    conf->registrations = NGX_CONF_UNSET;
    conf->hmac_keys = NGX_CONF_UNSET_PTR;
    conf->entra = NGX_CONF_UNSET_PTR;
    conf->topics = NGX_CONF_UNSET_PTR;
    conf->subscriptions = NGX_CONF_UNSET_PTR;
    conf->log_level = NGX_CONF_UNSET_UINT;

    return conf;
}


static char *
ngx_http_acs_notify_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_acs_notify_loc_conf_t  *prev = parent;
    ngx_http_acs_notify_loc_conf_t  *conf = child;

    ngx_http_acs_notify_main_conf_t  *amcf;

    ngx_conf_merge_value(conf->eventgrid, prev->eventgrid, 0);
    ngx_conf_merge_uint_value(conf->ack, prev->ack, NGX_ACS_ACK_DISPATCHED);
    ngx_conf_merge_msec_value(conf->dispatch_timeout, prev->dispatch_timeout,
                              20000);
    ngx_conf_merge_value(conf->render.preview, prev->render.preview, 1);
    ngx_conf_merge_ptr_value(conf->render.templates, prev->render.templates,
                             NULL);
    ngx_conf_merge_value(conf->registrations, prev->registrations, 0);

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_acs_notify_module);

    if (conf->dispatch_timeout >= 30000 || conf->dispatch_timeout < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_dispatch_timeout must be from 1s and "
                           "stay under Event Grid's 30s");
        return NGX_CONF_ERROR;
    }

    /* how long ACS rings an unanswered call (docs/dispatch.md, section 9) */

    ngx_conf_merge_msec_value(conf->call_ttl, prev->call_ttl,
                              NGX_ACS_CALL_TTL);
    ngx_conf_merge_msec_value(conf->max_age, prev->max_age, 0);

    if (conf->call_ttl
        && (conf->call_ttl < 1000 || conf->call_ttl > NGX_ACS_CALL_TTL_MAX))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_call_ttl must be off (0) or from 1s "
                           "to 1h");
        return NGX_CONF_ERROR;
    }

    if (conf->max_age
        && (conf->max_age < 1000 || conf->max_age > NGX_ACS_MAX_AGE_MAX))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_max_age must be off (0) or from 1s "
                           "to 7d");
        return NGX_CONF_ERROR;
    }

    if (conf->eventgrid == 1) {
        if (conf->hub_name.len) {
            conf->hub = ngx_http_acs_notify_find_hub(cf, amcf,
                                                     &conf->hub_name);
            if (conf->hub == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (amcf->hubs.nelts == 1) {
            conf->hub = amcf->hubs.elts;

        } else if (amcf->hubs.nelts > 1) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_eventgrid: several hubs are "
                               "defined, choose one with hub=NAME");
            return NGX_CONF_ERROR;
        }

        if (conf->voip_hub_name.len) {
            conf->voip_hub = ngx_http_acs_notify_find_hub(cf, amcf,
                                                      &conf->voip_hub_name);
            if (conf->voip_hub == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        if (conf->hub && conf->hub->timeout >= conf->dispatch_timeout) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "the timeout of acs_notify_hub \"%V\" is not "
                               "shorter than acs_notify_dispatch_timeout: a "
                               "slow push cannot be retried in time",
                               &conf->hub->name);
        }

        if (conf->hub && amcf->store == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_eventgrid with a hub needs "
                               "acs_notify_registry in the http block");
            return NGX_CONF_ERROR;
        }

        if (conf->hub
            && ngx_acs_store_hubs(cf, amcf->store, conf->hub,
                                  &conf->voip_hub)
               != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (conf->hub == NULL) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "acs_notify_eventgrid without acs_notify_hub: "
                               "events are checked and acknowledged, no push "
                               "is sent");
        }
    }
    ngx_conf_merge_ptr_value(conf->hmac_keys, prev->hmac_keys, NULL);

    if (conf->registrations == 1) {
        if (amcf->store == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_registrations needs "
                               "acs_notify_registry in the http block");
            return NGX_CONF_ERROR;
        }

        if (conf->hmac_keys == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_registrations needs "
                               "acs_notify_hmac_key");
            return NGX_CONF_ERROR;
        }
    }

    if (conf->secret == NULL) {
        conf->secret = prev->secret;
        conf->secrets = prev->secrets;
        conf->secret_in_query = prev->secret_in_query;
    }

    ngx_conf_merge_ptr_value(conf->entra, prev->entra, NULL);
    ngx_conf_merge_ptr_value(conf->topics, prev->topics, NULL);
    ngx_conf_merge_ptr_value(conf->subscriptions, prev->subscriptions, NULL);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_INFO);

    return NGX_CONF_OK;
}


static char *
ngx_http_acs_notify_eventgrid(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (ancf->eventgrid != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    ancf->eventgrid = 1;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_acs_conf_param(&value[i], "hub=", &ancf->hub_name)) {
            continue;
        }

        if (ngx_acs_conf_param(&value[i], "voip_hub=", &ancf->voip_hub_name))
        {
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_eventgrid: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_acs_webhook_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_acs_notify_hub(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_main_conf_t *amcf = conf;

    ngx_str_t      *value;
    ngx_uint_t      i;
    ngx_acs_hub_t  *hub;

    value = cf->args->elts;
    hub = amcf->hubs.elts;

    for (i = 0; i < amcf->hubs.nelts; i++) {
        if (hub[i].name.len == value[1].len
            && ngx_strncmp(hub[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_hub \"%V\" is duplicate",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    hub = ngx_array_push(&amcf->hubs);
    if (hub == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(hub, sizeof(ngx_acs_hub_t));
    hub->name = value[1];
    hub->index = amcf->hubs.nelts - 1;

    return ngx_acs_hub_create(cf, &value[2], cf->args->nelts - 2, hub);
}


static ngx_acs_hub_t *
ngx_http_acs_notify_find_hub(ngx_conf_t *cf,
    ngx_http_acs_notify_main_conf_t *amcf, ngx_str_t *name)
{
    ngx_acs_hub_t  *hub;

    hub = ngx_acs_hub_find(&amcf->hubs, name);

    if (hub == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_eventgrid: no acs_notify_hub \"%V\"",
                           name);
    }

    return hub;
}


static char *
ngx_http_acs_notify_dedup(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_main_conf_t *amcf = conf;

    ssize_t      size;
    ngx_int_t    ttl;
    ngx_str_t   *value, v;
    ngx_uint_t   i;

    if (amcf->dedup) {
        return "is duplicate";
    }

    value = cf->args->elts;
    size = 8 * 1024 * 1024;
    ttl = 86400;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_acs_conf_param(&value[i], "size=", &v)) {

            size = ngx_parse_size(&v);
            if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_dedup: invalid size \"%V\"",
                                   &v);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_acs_conf_param(&value[i], "ttl=", &v)) {

            ttl = ngx_parse_time(&v, 1);
            if (ttl == NGX_ERROR || ttl < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_dedup: invalid ttl \"%V\"",
                                   &v);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_dedup: invalid parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    amcf->dedup = ngx_acs_dedup_create(cf, size, ttl);
    if (amcf->dedup == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_acs_notify_trace(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    return ngx_acs_trace_create(cf, &value[1], cf->args->nelts - 1,
                                &amcf->trace);
}


static char *
ngx_http_acs_notify_template(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    if (ancf->render.templates == NGX_CONF_UNSET_PTR) {
        ancf->render.templates = NULL;
    }

    return ngx_acs_template_add(cf, &ancf->render.templates, &value[1],
                                &value[2], &value[3]);
}


static char *
ngx_http_acs_notify_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (ancf->status) {
        return "is duplicate";
    }

    ancf->status = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_acs_stats_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_acs_notify_registry(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    if (amcf->store != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_acs_store_create(cf, &value[1], cf->args->nelts - 1,
                                &amcf->store);
}


static char *
ngx_http_acs_notify_registrations(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (ancf->registrations != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    ancf->registrations = 1;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_acs_registrations_handler;

    return NGX_CONF_OK;
}


/* access keys of the ACS kind: base64 text, used decoded as HMAC keys */

static char *
ngx_http_acs_notify_hmac_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_str_t   *value, text, *key;
    ngx_uint_t   i;

    if (ancf->hmac_keys != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    ancf->hmac_keys = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                       sizeof(ngx_str_t));
    if (ancf->hmac_keys == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_acs_conf_value(cf, &value[i], &text) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        key = ngx_array_push(ancf->hmac_keys);
        if (key == NULL) {
            return NGX_CONF_ERROR;
        }

        key->data = ngx_pnalloc(cf->pool, ngx_base64_decoded_length(text.len));
        if (key->data == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_decode_base64(key, &text) != NGX_OK || key->len < 16) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_hmac_key: key %ui is not base64 "
                               "of at least 16 bytes", i);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_acs_notify_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    ngx_str_t  *value;

    if (ancf->secret != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    return ngx_acs_secret_create(cf, &value[1], cf->args->nelts - 1,
                                 &ancf->secret, &ancf->secrets,
                                 &ancf->secret_in_query);
}


static char *
ngx_http_acs_notify_entra(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_acs_notify_loc_conf_t *ancf = conf;

    char                              *rv;
    ngx_str_t                         *value;
    ngx_acs_entra_t                  **entra;
    ngx_http_acs_notify_main_conf_t   *amcf;

    if (ancf->entra != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rv = ngx_acs_entra_create(cf, &value[1], cf->args->nelts - 1,
                              &ancf->entra);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    /* the workers keep its key set current (init_process) */

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_acs_notify_module);

    entra = ngx_array_push(&amcf->entras);
    if (entra == NULL) {
        return NGX_CONF_ERROR;
    }

    *entra = ancf->entra;

    return NGX_CONF_OK;
}


