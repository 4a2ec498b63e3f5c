
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Lanes: the pushes of a worker to one hub host (the hubs that share its
 * connections), how many of them may be in flight, and when a failing
 * hub is left alone (docs/dispatch.md, section 7).  The jobs in a lane
 * are the engine's (ngx_acs_engine.c).
 */


#ifndef _NGX_ACS_LANE_H_INCLUDED_
#define _NGX_ACS_LANE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_acs_curl.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_limit.h"


typedef struct {
    ngx_str_t                   host;          /* and connect_to */
    ngx_uint_t                  http2;         /* asked for */
    ngx_acs_hub_t              *hub;           /* the first, for logs */

    ngx_queue_t                 calls;         /* of the engine's jobs */
    ngx_queue_t                 chat;
    ngx_uint_t                  queued;        /* in the two */
    ngx_uint_t                  active;        /* transfers running */

    ngx_acs_limit_t             limit;
    ngx_uint_t                  conns_max;     /* max_connections */
    ngx_uint_t                  version;       /* the hub's HTTP, 0: not
                                                  known yet */
    ngx_acs_curl_conns_t        conns;
    ngx_uint_t                  reported;      /* conns.opened counted */

    /* the brake: a failing hub gets a probe now and then */
    ngx_uint_t                  failures;      /* answers in a row */
    ngx_msec_t                  last_ok;       /* an answer that was not a
                                                  failure */
    ngx_msec_t                  wait;          /* the last brake's */
    unsigned                    braked:1;      /* nothing starts */
    unsigned                    probing:1;     /* one at a time */
    ngx_event_t                 wake;
    ngx_connection_t            dummy;         /* the timer's data */

    /* answers a second while pushes waited, for admission */
    ngx_msec_t                  rate_start;
    ngx_uint_t                  rate_done;
    ngx_uint_t                  rate;
    ngx_uint_t                  rate_backlog;  /* unsigned:1 */

    ngx_rbtree_t                handles;       /* the engine's */
    ngx_rbtree_node_t           sentinel;

    u_char                      error[CURL_ERROR_SIZE];
} ngx_acs_lane_t;


/* a lane per host of hubs; hub->lane set for each; wake: on brake ends */
ngx_acs_lane_t *ngx_acs_lanes_init(ngx_cycle_t *cycle, ngx_array_t *hubs,
    ngx_uint_t conns_cap, ngx_event_handler_pt wake, ngx_uint_t *n);

/* transfers that may start now */
ngx_uint_t ngx_acs_lane_room(ngx_acs_lane_t *lane);

/* transfers one device handle may have running: a quarter */
ngx_uint_t ngx_acs_lane_cap(ngx_acs_lane_t *lane);

/*
 * A transfer starts: 1, it waits for a connection to carry it; 0, it may
 * open one (the lane then lets no other do so until it is open)
 */
ngx_uint_t ngx_acs_lane_pipewait(ngx_acs_lane_t *lane);
void ngx_acs_lane_started(ngx_acs_lane_t *lane, ngx_acs_http_t *h);

/* a transfer that started at "started" ended with this verdict */
void ngx_acs_lane_answer(ngx_acs_lane_t *lane, ngx_acs_http_t *h,
    ngx_acs_verdict_e verdict, ngx_msec_t started);

/* the brake's timer went off: one push is tried */
void ngx_acs_lane_wake(ngx_acs_lane_t *lane);

/*
 * A delivery of n pushes (of calls only: calls) with ms left to its
 * deadline: NGX_OK, or NGX_BUSY (the hub fails) or NGX_AGAIN (the lane's
 * rate cannot send them in time), with the seconds after which to try
 * again
 */
ngx_int_t ngx_acs_lane_admit(ngx_acs_lane_t *lane, ngx_uint_t n,
    ngx_uint_t calls, ngx_msec_t ms, time_t *retry);

/* its figures for the status page */
void ngx_acs_lane_gauges(ngx_acs_lane_t *lane);


#endif /* _NGX_ACS_LANE_H_INCLUDED_ */
