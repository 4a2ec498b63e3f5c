
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * How many pushes a lane (the hubs of one host) has in flight: a limit
 * that follows the hub's round trip and answers (docs/dispatch.md,
 * section 7, "Concurrency").  Plain arithmetic on what the caller
 * measured, no nginx events: unit-tested on its own.
 */


#ifndef _NGX_ACS_LIMIT_H_INCLUDED_
#define _NGX_ACS_LIMIT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_ACS_LIMIT_INITIAL   8         /* in flight, at first */
#define NGX_ACS_LIMIT_FLOOR     4         /* in flight, at least: a device
                                             takes a quarter */
#define NGX_ACS_LIMIT_SLACK     2000      /* us of round trip: noise */


typedef struct {
    ngx_uint_t                  limit;         /* in flight, now */
    ngx_uint_t                  floor;
    ngx_uint_t                  ceiling;

    uint64_t                    rtt_min;       /* us, least round mean */
    uint64_t                    srtt;          /* us, smoothed samples */
    uint64_t                    decreased;     /* us, the round mean of a
                                                  latency decrease */
    ngx_uint_t                  decreased_from;  /* the limits of it */
    ngx_uint_t                  decreased_to;

    /* the round: about a limit's worth of answers */
    ngx_msec_t                  round_start;
    uint64_t                    round_sum;     /* us */
    ngx_uint_t                  round_n;
    ngx_uint_t                  round_peak;    /* most in flight seen */
    ngx_uint_t                  round_target;

    unsigned                    slow_start:1;
    unsigned                    cut:1;         /* a backoff this round */
    unsigned                    check:2;       /* rounds to the check of
                                                  a decrease */
    unsigned                    strikes:1;     /* a check failed */
} ngx_acs_limit_t;


void ngx_acs_limit_init(ngx_acs_limit_t *l, ngx_uint_t floor,
    ngx_uint_t ceiling, ngx_msec_t now);

/* a new ceiling (the protocol became known); the limit stays under it */
void ngx_acs_limit_ceiling(ngx_acs_limit_t *l, ngx_uint_t ceiling);

/*
 * An answer of the hub, rtt microseconds after the request went out, to
 * a push started at "started", with in_flight transfers running (this one
 * included)
 */
void ngx_acs_limit_sample(ngx_acs_limit_t *l, uint64_t rtt,
    ngx_uint_t in_flight, ngx_msec_t started, ngx_msec_t now);

/*
 * The hub throttled (429, 503), failed (5xx), or a push timed out, with
 * in_flight transfers running: halve, once a round trip
 */
void ngx_acs_limit_backoff(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now);


#endif /* _NGX_ACS_LIMIT_H_INCLUDED_ */
