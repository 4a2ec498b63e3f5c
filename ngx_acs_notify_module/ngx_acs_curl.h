
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A small asynchronous HTTP client: libcurl's multi-socket API driven by
 * nginx's own events and timers, one per worker.
 */


#ifndef _NGX_ACS_CURL_H_INCLUDED_
#define _NGX_ACS_CURL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <curl/curl.h>


#define NGX_ACS_CURL_DETAIL_MAX  512
#define NGX_ACS_CURL_RETRY_MAX   86400     /* s, of a Retry-After */
#define NGX_ACS_CURL_ID_MAX      64        /* an id of the answer's */
#define NGX_ACS_CURL_STREAMS     100       /* HTTP/2 streams a connection
                                              carries at most, fewer when
                                              the peer's SETTINGS say so */


/* the connections of one owner (a lane), counted as curl opens them */

typedef struct {
    ngx_uint_t                  open;
    ngx_uint_t                  ready;         /* of them, past their
                                                  connect and TLS */
    ngx_uint_t                  opened;        /* ever */
    ngx_uint_t                  asked;         /* transfers that may open
                                                  one and did not yet */
} ngx_acs_curl_conns_t;


/* a request header, e.g. apns-push-type: voip */

typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   value;
} ngx_acs_header_t;


typedef struct ngx_acs_http_s  ngx_acs_http_t;

typedef void (*ngx_acs_http_done_pt)(ngx_acs_http_t *h);


struct ngx_acs_http_s {
    /* set by the caller */
    const char                 *url;
    struct curl_slist          *headers;     /* kept by the caller */
    u_char                     *body;        /* kept alive by the caller */
    size_t                      body_len;
    const char                 *ca_file;     /* NULL: the system store */
    struct curl_slist          *connect_to;  /* owned by the caller */
    ngx_uint_t                  http2;       /* unsigned:1 */
    ngx_uint_t                  pipewait;    /* unsigned:1, wait for a
                                                connection that may carry
                                                it as a stream rather than
                                                open one */
    ngx_acs_curl_conns_t       *conns;       /* NULL: not counted */
    ngx_uint_t                  opened;      /* unsigned:1, it opened a
                                                connection */
    ngx_socket_t                sock;        /* the last curl named */
    ngx_msec_t                  timeout;     /* from the start */
    ngx_acs_http_done_pt        handler;
    void                       *data;
    ngx_uint_t                  get;         /* unsigned:1, not a POST */
    const char                 *method;      /* another: "PUT", "DELETE" */
    u_char                     *response;    /* NULL: body to detail */
    size_t                      response_size;  /* a longer body fails */

    /* the outcome, when handler runs */
    long                        status;      /* 0: no HTTP answer */
    CURLcode                    result;
    ngx_uint_t                  connected;   /* unsigned:1, was up */
    ngx_uint_t                  version;     /* HTTP 1 or 2, 0: none */
    uint64_t                    rtt;         /* us, from the request
                                                going out to the answer */
    time_t                      retry_after; /* seconds, 0 if none, at
                                                most NGX_ACS_CURL_RETRY_MAX */
    u_char                      tracking_id[NGX_ACS_CURL_ID_MAX];
    size_t                      tracking_id_len;
    u_char                      correlation_id[NGX_ACS_CURL_ID_MAX];
    size_t                      correlation_id_len;  /* x-ms-correlation-
                                                        request-id */
    u_char                      notification_id[NGX_ACS_CURL_ID_MAX];
    size_t                      notification_id_len; /* from Location */
    u_char                      detail[NGX_ACS_CURL_DETAIL_MAX];
    size_t                      detail_len;
    size_t                      response_len;
    char                        error[CURL_ERROR_SIZE];

    CURL                       *easy;
};


/* per_host: connections to one host; connections: the cache of all */
ngx_int_t ngx_acs_curl_init_process(ngx_cycle_t *cycle, ngx_uint_t per_host,
    ngx_uint_t connections);
void ngx_acs_curl_exit_process(ngx_cycle_t *cycle);

/* starts the request; h->handler runs when it is over, never before */
ngx_int_t ngx_acs_curl_submit(ngx_acs_http_t *h, ngx_log_t *log);

/*
 * Request headers as the list libcurl reads, written into lines[n] and
 * buf (ngx_acs_curl_headers_size() bytes); an empty value makes "Name:",
 * which tells libcurl to send no such header.
 */
size_t ngx_acs_curl_headers_size(ngx_acs_header_t *h, ngx_uint_t n);
struct curl_slist *ngx_acs_curl_headers(ngx_acs_header_t *h, ngx_uint_t n,
    struct curl_slist *lines, u_char *buf);


#endif /* _NGX_ACS_CURL_H_INCLUDED_ */
