
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Notification Hubs links: connection strings, SAS tokens, the send URL.
 */


#ifndef _NGX_ACS_HUB_H_INCLUDED_
#define _NGX_ACS_HUB_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <curl/curl.h>

#include "ngx_acs_sas.h"
#include "ngx_acs_curl.h"


/* HTTP/1.1 unless http2=on: cheaper per push (docs/dispatch.md) */
#define NGX_ACS_HUB_HTTP2_DEFAULT  0


typedef struct {
    ngx_str_t                   name;          /* acs_notify_hub NAME */
    ngx_uint_t                  index;         /* in the http block's list */
    ngx_str_t                   host;          /* NS.servicebus.windows.net */
    ngx_str_t                   hub;
    ngx_str_t                   key_name;
    ngx_str_t                   key;
    ngx_str_t                   api_version;
    ngx_str_t                   resource;      /* https://host/hub */
    ngx_str_t                   url;           /* direct send, C string */
    ngx_str_t                   tag_url;       /* tag send, C string */
    ngx_str_t                   connect_to;    /* CONNECT_TO entry, or "" */
    struct curl_slist          *connect_to_list;    /* per worker */
    ngx_str_t                   ca_file;       /* C string or empty */
    ngx_uint_t                  max_connections;
    ngx_flag_t                  http2;
    ngx_msec_t                  timeout;

    /* per worker: the cached SAS token */
    u_char                     *token;
    size_t                      token_len;
    time_t                      token_expires;

    void                       *lane;          /* per worker, dispatch's */
} ngx_acs_hub_t;


char *ngx_acs_hub_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_hub_t *hub);

/* the hub's token, signed anew within NGX_ACS_SAS_RENEW of its expiry */
ngx_str_t ngx_acs_hub_token(ngx_acs_hub_t *hub, time_t now);
void ngx_acs_hub_token_reset(ngx_acs_hub_t *hub);

/* how a request to the hub goes: CA, connect_to, HTTP/2, timeout */
void ngx_acs_hub_transport(ngx_acs_hub_t *hub, ngx_acs_http_t *h);

/* the hub called name among hubs, or NULL */
ngx_acs_hub_t *ngx_acs_hub_find(ngx_array_t *hubs, ngx_str_t *name);

ngx_int_t ngx_acs_hub_init_process(ngx_acs_hub_t *hub, ngx_log_t *log);
void ngx_acs_hub_exit_process(ngx_acs_hub_t *hub);


#endif /* _NGX_ACS_HUB_H_INCLUDED_ */
