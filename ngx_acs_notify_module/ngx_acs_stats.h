
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Counters in one shared memory zone, updated with atomics (no lock on
 * the hot path), summed over workers by construction, kept across reloads.
 */


#ifndef _NGX_ACS_STATS_H_INCLUDED_
#define _NGX_ACS_STATS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_http.h"
#include "ngx_acs_hub.h"


typedef enum {
    NGX_ACS_OUT_SENT = 0,
    NGX_ACS_OUT_GONE,
    NGX_ACS_OUT_REJECTED,
    NGX_ACS_OUT_FAILED,
    NGX_ACS_OUT_DUPLICATE,
    NGX_ACS_OUT_EXPIRED,       /* a call whose ring time ran out */
    NGX_ACS_OUT_MAX
} ngx_acs_outcome_e;


ngx_int_t ngx_acs_stats_init_conf(ngx_conf_t *cf, ngx_uint_t nhubs,
    void **zone);

/* a worker takes a slot for its gauges, free or of a process gone */
void ngx_acs_stats_init_process(void *zone);
void ngx_acs_stats_exit_process(void);

/* a request's result, as $acs_notify_result says it */
void ngx_acs_stats_request(ngx_acs_result_e result);
void ngx_acs_stats_event(ngx_str_t *type);
void ngx_acs_stats_registration(ngx_uint_t method, ngx_uint_t status);

void ngx_acs_stats_push(ngx_uint_t platform, ngx_acs_outcome_e outcome);

/* an event too old to push: a call (acs_notify_call_ttl) or another */
void ngx_acs_stats_stale(ngx_uint_t call);
void ngx_acs_stats_delivery_time(ngx_msec_t ms);
/* an answer of a hub (NGX_ACS_ANSWER_ERROR: none), and its time */
void ngx_acs_stats_hub_answer(ngx_uint_t hub, ngx_acs_answer_e answer,
    ngx_msec_t ms);
void ngx_acs_stats_retry(void);
void ngx_acs_stats_queue(ngx_int_t delta);
void ngx_acs_stats_in_flight(ngx_int_t delta);
void ngx_acs_stats_connections(ngx_int_t delta);

/* a lane's figures, in the row of its first hub; opened: since the last */
void ngx_acs_stats_lane(ngx_uint_t hub, ngx_uint_t limit,
    ngx_uint_t in_flight, ngx_uint_t queued, uint64_t srtt,
    uint64_t rtt_min, ngx_uint_t version, ngx_uint_t open,
    ngx_uint_t opened);

/*
 * What tells the status page how many registrations the device store
 * holds: the store gives it, so that the counters below every feature
 * call none of them
 */
typedef size_t (*ngx_acs_stats_devices_pt)(void *data, ngx_log_t *log);

void ngx_acs_stats_devices(ngx_acs_stats_devices_pt devices, void *data);

/* the status location's handler: JSON, or Prometheus text */
ngx_int_t ngx_acs_stats_handler(ngx_http_request_t *r);


#endif /* _NGX_ACS_STATS_H_INCLUDED_ */
