
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The trace (acs_notify_trace): a journal of recent final push outcomes in
 * a shared memory zone of every worker, oldest forgotten first, and its
 * answers at the status location (?trace&user=RAW_ID, ?trace&event=ID).
 */


#ifndef _NGX_ACS_TRACE_H_INCLUDED_
#define _NGX_ACS_TRACE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_device.h"


typedef enum {
    NGX_ACS_TRACE_SENT = 0,
    NGX_ACS_TRACE_GONE,
    NGX_ACS_TRACE_REJECTED,
    NGX_ACS_TRACE_FAILED,
    NGX_ACS_TRACE_DROPPED,
    NGX_ACS_TRACE_SKIPPED,
    NGX_ACS_TRACE_EXPIRED,
    NGX_ACS_TRACE_STALE,
    NGX_ACS_TRACE_DUPLICATE,
    NGX_ACS_TRACE_OUTCOMES
} ngx_acs_trace_outcome_e;


#define NGX_ACS_TRACE_NONE  ((ngx_msec_t) -1)   /* a time not known */


/*
 * One final outcome as its writer knows it.  The strings are copied (cut
 * to the journal's sizes), never kept: a device handle is kept by its
 * first 8 bytes, a tag send's tag whole; phone numbers ("4:+...") are
 * masked but their last 4 digits before they reach the journal.
 */

typedef struct {
    ngx_str_t                   event_id;
    ngx_str_t                   type;
    ngx_str_t                   user;          /* the recipient's raw id */
    ngx_str_t                   device;        /* empty: no device */
    ngx_str_t                   handle;        /* or the tag of a tag send */
    ngx_str_t                   hub;
    ngx_str_t                   tracking_id;   /* of the hub's answer */
    ngx_str_t                   correlation_id;
    ngx_str_t                   notification_id;
    ngx_uint_t                  platform;      /* 0: none */
    ngx_acs_target_e            target;
    ngx_acs_trace_outcome_e     outcome;
    ngx_uint_t                  status;        /* of the last answer */
    ngx_uint_t                  attempts;
    ngx_msec_t                  age;           /* of the event on arrival */
    ngx_msec_t                  queued;        /* arrival to last start */
    ngx_msec_t                  hub_time;      /* the last round trip */
} ngx_acs_trace_push_t;


typedef struct ngx_acs_trace_s  ngx_acs_trace_t;


/* acs_notify_trace zone=NAME:SIZE */
char *ngx_acs_trace_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t n,
    ngx_acs_trace_t **trace);

/* the journal of this process' configuration, or none (NULL) */
void ngx_acs_trace_init_process(ngx_acs_trace_t *trace);

/* 1 when there is a journal to write to */
ngx_uint_t ngx_acs_trace_on(void);

/* one entry, in constant time under the zone's lock; none when off */
void ngx_acs_trace_add(ngx_acs_trace_push_t *tp);

/* 1 when the request's query asks for the trace ("trace" in its args) */
ngx_uint_t ngx_acs_trace_asked(ngx_http_request_t *r);

/* the answer to ?trace&user=RAW_ID or ?trace&event=ID */
ngx_int_t ngx_acs_trace_handler(ngx_http_request_t *r);


#endif /* _NGX_ACS_TRACE_H_INCLUDED_ */
