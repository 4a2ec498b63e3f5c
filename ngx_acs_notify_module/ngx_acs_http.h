
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * What every handler of the module shares: the request's state, its
 * result (one table of names for $acs_notify_result, logs and metrics),
 * headers in and out, the answer, and one way to refuse.
 */


#ifndef _NGX_ACS_HTTP_H_INCLUDED_
#define _NGX_ACS_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef enum {
    NGX_ACS_RESULT_NONE = 0,
    NGX_ACS_RESULT_VALIDATED,
    NGX_ACS_RESULT_DELETED,
    NGX_ACS_RESULT_OPTIONS,
    NGX_ACS_RESULT_DISPATCHED,
    NGX_ACS_RESULT_ACCEPTED,
    NGX_ACS_RESULT_CHECKED,
    NGX_ACS_RESULT_STALE,
    NGX_ACS_RESULT_UNAVAILABLE_DISPATCH,
    NGX_ACS_RESULT_UNAVAILABLE_QUEUE_FULL,
    NGX_ACS_RESULT_UNAVAILABLE_SHUTDOWN,
    NGX_ACS_RESULT_UNAVAILABLE_REGISTRY,
    NGX_ACS_RESULT_UNAVAILABLE_JWKS,
    NGX_ACS_RESULT_UNAVAILABLE_HUB,
    NGX_ACS_RESULT_UNAVAILABLE_BACKLOG,
    NGX_ACS_RESULT_REJECTED_METHOD,
    NGX_ACS_RESULT_REJECTED_SECRET,
    NGX_ACS_RESULT_REJECTED_TOKEN,
    NGX_ACS_RESULT_REJECTED_SUBSCRIPTION,
    NGX_ACS_RESULT_REJECTED_CONTENT_TYPE,
    NGX_ACS_RESULT_REJECTED_AEG_EVENT_TYPE,
    NGX_ACS_RESULT_REJECTED_JSON,
    NGX_ACS_RESULT_REJECTED_TOO_LARGE,
    NGX_ACS_RESULT_REJECTED_SCHEMA,
    NGX_ACS_RESULT_REJECTED_TOPIC,
    NGX_ACS_RESULT_REJECTED_ORIGIN,
    NGX_ACS_RESULT_OTHER,
    NGX_ACS_RESULTS
} ngx_acs_result_e;


typedef struct {
    ngx_uint_t                  registration;   /* unsigned:1 */

    ngx_uint_t                  events;
    ngx_uint_t                  pushes;
    ngx_uint_t                  ignored;
    ngx_uint_t                  duplicates;
    ngx_uint_t                  stale;      /* events too old to push */
    ngx_acs_result_e            result;
    ngx_str_t                   event_id;   /* the first event's id */

    /* a refusal: its status, and the code and reason of its answer */
    ngx_uint_t                  refused;    /* unsigned:1 */
    ngx_uint_t                  status;
    const char                 *code;
    ngx_str_t                   message;
    time_t                      retry_after;    /* of a 503; 0: the default */

    void                        *data;      /* the handler's own state */
} ngx_http_acs_notify_ctx_t;


extern ngx_module_t  ngx_http_acs_notify_module;


/* the request's state, made at first use; NULL when out of memory */
ngx_http_acs_notify_ctx_t *ngx_acs_ctx(ngx_http_request_t *r);

/* "rejected:token": the name of a result; NULL for NGX_ACS_RESULT_NONE */
ngx_str_t *ngx_acs_result_name(ngx_acs_result_e result);

/* the part of a result's name after the colon: "token" */
const char *ngx_acs_result_code(ngx_acs_result_e result);

/* the result the request ends with ($acs_notify_result) */
void ngx_acs_set_result(ngx_http_request_t *r, ngx_acs_result_e result);

ngx_table_elt_t *ngx_acs_header(ngx_http_request_t *r, const char *name);
ngx_int_t ngx_acs_add_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);

/* Retry-After: seconds, or 0 for the module's default (10) */
ngx_int_t ngx_acs_retry_after(ngx_http_request_t *r, time_t seconds);

/* the answer: status, and a JSON body or none */
ngx_int_t ngx_acs_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *body);

/*
 * A refusal, recorded in the request's state by the handler that logged
 * it in its own words: status, the code and the reason of its answer
 * ({"error":{"code":...,"message":...}}, with Retry-After when 503).
 * Returns status.
 */
ngx_int_t ngx_acs_refuse(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, u_char *reason, size_t len);

/*
 * The answer of a handler that failed with rc: the refusal recorded (the
 * request's body read or discarded first), or rc itself when nothing was
 * refused (a failure of the module's, for nginx to answer).
 */
ngx_int_t ngx_acs_refusal(ngx_http_request_t *r, ngx_int_t rc);


#endif /* _NGX_ACS_HTTP_H_INCLUDED_ */
