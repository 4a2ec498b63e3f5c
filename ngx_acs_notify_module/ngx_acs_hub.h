
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
#include "ngx_acs_device.h"


/* HTTP/2 asked for, HTTP/1.1 when the hub does not offer it */
#define NGX_ACS_HUB_HTTP2_DEFAULT  1

/* connections a worker may open to a hub's host, at most */
#define NGX_ACS_HUB_CONNECTIONS    1024


/*
 * What an answer of Notification Hubs means (docs/dispatch.md, 5), for a
 * push, an installation or any other request to a hub: every reading of
 * its statuses is in ngx_acs_hub_verdict()
 */

typedef enum {
    NGX_ACS_VERDICT_SENT = 0,       /* 2xx */
    NGX_ACS_VERDICT_GONE,           /* 410: the device handle is gone */
    NGX_ACS_VERDICT_RENEW,          /* 401: a new SAS token, once */
    NGX_ACS_VERDICT_DENIED,         /* 403 without Retry-After: the rule
                                       lacks a right */
    NGX_ACS_VERDICT_ABSENT,         /* 404: no such hub, or resource */
    NGX_ACS_VERDICT_REFUSED,        /* 400, 413, other 4xx: never better
                                       on retry */
    NGX_ACS_VERDICT_THROTTLED,      /* 429, 503, 403 with Retry-After:
                                       the hub asks for less */
    NGX_ACS_VERDICT_FAILED,         /* 408, other 5xx, a timeout or an
                                       error after the request went out */
    NGX_ACS_VERDICT_UNREACHABLE     /* no connection: refused, not
                                       resolved, TLS failed, not in time */
} ngx_acs_verdict_e;


/* the answers the status page counts apart */

typedef enum {
    NGX_ACS_ANSWER_2XX = 0,
    NGX_ACS_ANSWER_400,
    NGX_ACS_ANSWER_401,
    NGX_ACS_ANSWER_403,
    NGX_ACS_ANSWER_404,
    NGX_ACS_ANSWER_410,
    NGX_ACS_ANSWER_413,
    NGX_ACS_ANSWER_429,
    NGX_ACS_ANSWER_4XX,
    NGX_ACS_ANSWER_5XX,
    NGX_ACS_ANSWER_ERROR,           /* no answer */
    NGX_ACS_ANSWERS
} ngx_acs_answer_e;


typedef struct {
    ngx_str_t                   name;          /* acs_notify_hub NAME */
    ngx_uint_t                  index;         /* in the http block's list */
    ngx_str_t                   host;          /* NS.servicebus.windows.net */
    ngx_str_t                   hub;
    ngx_str_t                   key_name;
    ngx_str_t                   key;
    ngx_str_t                   api_version;
    ngx_str_t                   resource;      /* https://host/hub */
    ngx_str_t                   urls[NGX_ACS_TARGETS];   /* the sends to
                                                  each target, C strings */
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

/* the header that names a push's target: its value, the handle or tag */
ngx_str_t *ngx_acs_hub_target(ngx_acs_target_e target);

/* how a request to the hub goes: CA, connect_to, HTTP/2, timeout */
void ngx_acs_hub_transport(ngx_acs_hub_t *hub, ngx_acs_http_t *h);

/* the verdict of a finished request */
ngx_acs_verdict_e ngx_acs_hub_verdict(ngx_acs_http_t *h);

/*
 * Why a request failed, for logs: libcurl's error, or "HTTP 429
 * throttled", "HTTP 403 quota", "HTTP 500"; a C string in buf
 */
void ngx_acs_hub_why(ngx_acs_http_t *h, u_char *buf, size_t size);

/*
 * NH's error detail: the text of the <Detail> of its error body, else the
 * start of the body, without a line end, at most
 * NGX_ACS_HUB_DETAIL_MAX bytes (pointing into the body)
 */
#define NGX_ACS_HUB_DETAIL_MAX  200

void ngx_acs_hub_detail(ngx_acs_http_t *h, ngx_str_t *detail);

/* the class of an answer the status page counts, and its name */
ngx_acs_answer_e ngx_acs_hub_answer(ngx_acs_http_t *h);
char *ngx_acs_hub_answer_name(ngx_acs_answer_e answer);

/*
 * Connections a worker may open to one hub host whatever max_connections
 * says: each takes one of worker_connections and two descriptors
 */
ngx_uint_t ngx_acs_hub_conns_cap(ngx_cycle_t *cycle);

/* the hub called name among hubs, or NULL */
ngx_acs_hub_t *ngx_acs_hub_find(ngx_array_t *hubs, ngx_str_t *name);

ngx_int_t ngx_acs_hub_init_process(ngx_acs_hub_t *hub, ngx_log_t *log);
void ngx_acs_hub_exit_process(ngx_acs_hub_t *hub);


#endif /* _NGX_ACS_HUB_H_INCLUDED_ */
