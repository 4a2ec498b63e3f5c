
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The concurrency limit of a lane (docs/dispatch.md, section 7,
 * "Concurrency"): additive increase, multiplicative decrease on the
 * hub's refusals, and a delay band on the round trip as in TCP Vegas.
 *
 * A round lasts from its start until the answers to the pushes in flight
 * then, and to one started in it, came back: one round trip (or a second,
 * when pushes are few).  At its end, with the mean round trip of its answers
 * and rtt_min, the least round mean seen, the pushes in excess of what
 * the hub's distance needs are
 *
 *     queued = limit * (mean - rtt_min - slack) / mean
 *
 * (slack: 2 ms of scheduling noise, which is all there is on loopback).
 * Few queued (at most limit / 4, a round trip up to a third over its
 * least): the limit grows, doubling a round while it starts (slow start),
 * then by limit / 8 a round, and only when the pushes in flight reached
 * half of it (a lane with less to send learns nothing about more).  Many
 * queued (over limit / 2, a round trip twice its least): it shrinks by
 * half of them.  Between: it creeps up by limit / 64, so that a steady
 * hub sees a steady number and a minimum measured too low cannot pin it.
 * A refusal of the hub (429, 503 and other 5xx, a timeout) halves it,
 * once a round trip.  The band is wide on purpose: a worker that answers
 * a thousand pushes in one turn of its event loop adds tens of
 * milliseconds to the last of them without being short of anything.
 *
 * rtt_min only falls, but for one case: when the first round of pushes
 * started after a decrease for latency is not faster by at least half of
 * what the decrease should bring (latency of ours is proportional to the
 * pushes in flight), twice in a row, the latency was not ours (the hub's
 * distance grew) and the round's mean becomes the new minimum, so a hub
 * that moved farther away is not starved.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_limit.h"


#define NGX_ACS_LIMIT_MIN_ANSWERS  4       /* a round has at least */
#define NGX_ACS_LIMIT_ROUND_MAX    1000    /* ms: a round of few answers
                                              ends at last */


static void ngx_acs_limit_round(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now);
static void ngx_acs_limit_begin(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now);


void
ngx_acs_limit_init(ngx_acs_limit_t *l, ngx_uint_t floor, ngx_uint_t ceiling,
    ngx_msec_t now)
{
    ngx_memzero(l, sizeof(ngx_acs_limit_t));

    l->ceiling = ngx_max(ceiling, 1);
    l->floor = ngx_max(ngx_min(floor, l->ceiling), 1);
    l->limit = ngx_min(ngx_max(NGX_ACS_LIMIT_INITIAL, l->floor), l->ceiling);
    l->slow_start = 1;

    ngx_acs_limit_begin(l, l->limit, now);
}


void
ngx_acs_limit_ceiling(ngx_acs_limit_t *l, ngx_uint_t ceiling)
{
    l->ceiling = ngx_max(ceiling, 1);
    l->floor = ngx_min(l->floor, l->ceiling);
    l->limit = ngx_min(l->limit, l->ceiling);
}


void
ngx_acs_limit_sample(ngx_acs_limit_t *l, uint64_t rtt, ngx_uint_t in_flight,
    ngx_msec_t started, ngx_msec_t now)
{
    l->srtt = l->srtt ? l->srtt - (l->srtt >> 3) + (rtt >> 3) : rtt;

    l->round_sum += rtt;
    l->round_n++;
    l->round_peak = ngx_max(l->round_peak, in_flight);

    /*
     * The pushes in flight when the round began have come back, and one
     * started in it: a round trip went by.  Answers of a whole cohort
     * make the round's mean: the first answers alone would be the fast
     * ones of a hub with jitter.
     */

    if ((l->round_n >= l->round_target
         && (ngx_msec_int_t) (started - l->round_start) >= 0)
        || now - l->round_start >= NGX_ACS_LIMIT_ROUND_MAX)
    {
        ngx_acs_limit_round(l, in_flight, now);
    }
}


void
ngx_acs_limit_backoff(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now)
{
    ngx_msec_t  rtt;

    /* once a round trip: the refusals of one round are one signal */

    rtt = (ngx_msec_t) ((l->rtt_min ? l->rtt_min : l->srtt) / 1000);

    if (l->cut && (ngx_msec_int_t) (now - l->round_start - rtt) < 0) {
        return;
    }

    l->limit = ngx_max(l->limit / 2, l->floor);
    l->slow_start = 0;
    l->check = 0;

    /* what this round measured was under the old limit */

    ngx_acs_limit_begin(l, in_flight, now);
    l->cut = 1;
}


static void
ngx_acs_limit_round(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now)
{
    uint64_t    mean, excess;
    ngx_uint_t  queued, step;

    mean = l->round_sum / l->round_n;

    if (l->rtt_min == 0 || mean < l->rtt_min) {
        l->rtt_min = mean;
    }

    /*
     * The round after a decrease for latency still answers pushes started
     * before it; the one after that is the first under the lower limit
     */

    if (l->check) {

        if (--l->check) {
            /* the pushes of the round before the decrease: wait */
            ngx_acs_limit_begin(l, in_flight, now);
            return;
        }

        /*
         * Latency of ours falls with the pushes in flight: at least half
         * of that fall, or the latency was the hub's
         */

        if (mean * l->decreased_from + l->decreased * l->decreased_to
            > 2 * l->decreased * l->decreased_to
              + (l->decreased * (l->decreased_from - l->decreased_to)) / 2)
        {
            /* twice in a row: once may be noise */

            if (l->strikes++) {
                l->rtt_min = mean;
                l->strikes = 0;
            }

        } else {
            l->strikes = 0;
        }
    }

    excess = (mean > l->rtt_min + NGX_ACS_LIMIT_SLACK)
             ? mean - l->rtt_min - NGX_ACS_LIMIT_SLACK : 0;

    queued = (ngx_uint_t) (l->limit * excess / mean);

    if (queued <= l->limit / 4) {

        if (l->round_peak * 2 >= l->limit) {
            step = l->slow_start ? l->limit : ngx_max(l->limit / 8, 1);
            l->limit = ngx_min(l->limit + step, l->ceiling);
        }

    } else if (queued > l->limit / 2) {
        l->decreased = mean;
        l->decreased_from = l->limit;
        l->limit = ngx_max(l->limit - queued / 2, l->floor);
        l->decreased_to = l->limit;
        l->slow_start = 0;
        l->check = 2;

    } else {
        /* between: creep up, so that a minimum too low cannot pin it */
        l->slow_start = 0;

        if (l->round_peak * 2 >= l->limit) {
            l->limit = ngx_min(l->limit + ngx_max(l->limit / 64, 1),
                               l->ceiling);
        }
    }

    ngx_acs_limit_begin(l, in_flight, now);
}


static void
ngx_acs_limit_begin(ngx_acs_limit_t *l, ngx_uint_t in_flight,
    ngx_msec_t now)
{
    l->round_target = ngx_max(in_flight, NGX_ACS_LIMIT_MIN_ANSWERS);
    l->round_start = now;
    l->round_sum = 0;
    l->round_n = 0;
    l->round_peak = 0;
    l->cut = 0;
}
