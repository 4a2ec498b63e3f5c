
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Lanes (docs/dispatch.md, section 7).  A lane is the pushes of a worker
 * to one host: the hubs of a namespace (and connect_to) share its
 * connections.  What it decides:
 *
 *   how many   the limit of ngx_acs_limit.c, under a ceiling: HTTP/2,
 *              max_connections connections of up to 100 streams each;
 *              HTTP/1.1, a connection each; until the first answer says
 *              which, max_connections
 *   where      an HTTP/2 lane gives libcurl no more transfers than its
 *              ready connections (connected, TLS done) have streams for;
 *              when they are full, transfers that may open a connection
 *              (no CURLOPT_PIPEWAIT), as many as the limit needs more
 *              connections, and the others wait until those are ready:
 *              libcurl opens a connection for each transfer it cannot
 *              put on a ready one, PIPEWAIT or not, once the protocol is
 *              known (a burst of handshakes, then idle connections)
 *   when not   a brake: 8 failing answers in a row (429, 503, 5xx,
 *              timeouts) with none good for 100 ms, or one refused
 *              connection, stop the lane; after Retry-After (at most
 *              10 s) or 250 ms doubling up to 1 s, one push is tried, and
 *              its answer opens the lane again or brakes it anew, so a
 *              failing hub gets a probe, not every push and retry
 *   admission  while its pushes wait, the rate the lane answers at tells
 *              whether a new delivery can be sent before its deadline
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_stats.h"
#include "ngx_acs_lane.h"


#define NGX_ACS_BRAKE_FAILURES   8        /* answers in a row */
#define NGX_ACS_BRAKE_QUIET      100      /* ms without a good answer */
#define NGX_ACS_BRAKE_BASE       250      /* ms */
#define NGX_ACS_BRAKE_MAX        1000     /* ms, without Retry-After */
#define NGX_ACS_BRAKE_HONOUR     10       /* s of Retry-After, at most */
#define NGX_ACS_HANDLE_SHARE     4        /* a handle takes 1/4 of it */
#define NGX_ACS_RATE_WINDOW      1000     /* ms */


static void ngx_acs_lane_brake(ngx_acs_lane_t *lane, ngx_acs_http_t *h,
    ngx_acs_verdict_e verdict);
static void ngx_acs_lane_rate(ngx_acs_lane_t *lane);
static ngx_uint_t ngx_acs_lane_ceiling(ngx_acs_lane_t *lane);


ngx_acs_lane_t *
ngx_acs_lanes_init(ngx_cycle_t *cycle, ngx_array_t *hubs,
    ngx_uint_t conns_cap, ngx_event_handler_pt wake, ngx_uint_t *n)
{
    u_char          *p;
    ngx_str_t        key;
    ngx_uint_t       i, j, nlanes;
    ngx_acs_hub_t   *hub;
    ngx_acs_lane_t  *lanes, *lane;

    hub = hubs->elts;
    nlanes = 0;

    lanes = ngx_pcalloc(cycle->pool, hubs->nelts * sizeof(ngx_acs_lane_t));
    if (lanes == NULL) {
        return NULL;
    }

    for (i = 0; i < hubs->nelts; i++) {

        key.len = hub[i].host.len + 1 + hub[i].connect_to.len;
        key.data = ngx_pnalloc(cycle->pool, key.len);
        if (key.data == NULL) {
            return NULL;
        }

        p = ngx_cpymem(key.data, hub[i].host.data, hub[i].host.len);
        *p++ = ' ';
        ngx_memcpy(p, hub[i].connect_to.data, hub[i].connect_to.len);

        for (j = 0; j < nlanes; j++) {
            lane = &lanes[j];

            if (lane->http2 == (ngx_uint_t) hub[i].http2
                && lane->host.len == key.len
                && ngx_strncmp(lane->host.data, key.data, key.len) == 0)
            {
                break;
            }
        }

        if (j == nlanes) {
            lane = &lanes[nlanes++];

            lane->host = key;
            lane->http2 = hub[i].http2;
            lane->hub = &hub[i];

            ngx_queue_init(&lane->calls);
            ngx_queue_init(&lane->chat);
            ngx_rbtree_init(&lane->handles, &lane->sentinel,
                            ngx_rbtree_insert_value);
            ngx_acs_worker_event(&lane->wake, wake, &lane->dummy,
                                 cycle->log);
        }

        hub[i].lane = lane;

        /* hubs of one host share its connections: the largest number */

        lane->conns_max = ngx_max(lane->conns_max,
                                  ngx_min(hub[i].max_connections,
                                          conns_cap));
    }

    for (j = 0; j < nlanes; j++) {
        lane = &lanes[j];

        ngx_acs_limit_init(&lane->limit, NGX_ACS_LIMIT_FLOOR,
                           ngx_acs_lane_ceiling(lane), ngx_current_msec);

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                       "acs_notify: lane \"%V\" (%s): %ui connections, "
                       "%ui in flight at first", &lane->host,
                       lane->http2 ? "HTTP/2 asked" : "HTTP/1.1",
                       lane->conns_max, lane->limit.limit);
    }

    *n = nlanes;

    return lanes;
}


/* HTTP/2: streams on each connection; HTTP/1.1 or not known: one */

static ngx_uint_t
ngx_acs_lane_ceiling(ngx_acs_lane_t *lane)
{
    return lane->conns_max * ((lane->version == 2) ? NGX_ACS_CURL_STREAMS
                                                    : 1);
}


ngx_uint_t
ngx_acs_lane_room(ngx_acs_lane_t *lane)
{
    ngx_uint_t  room, capacity, need, opening;

    if (lane->braked) {
        return 0;
    }

    if (lane->probing) {
        return lane->active ? 0 : 1;
    }

    if (lane->version == 0 && lane->http2) {

        /*
         * The first answer tells the protocol.  Until then one transfer:
         * libcurl 8 holds the transfers that wait for a connection to
         * multiplex (PIPEWAIT) until that connection's first transfer is
         * done, their timeouts running, when the hub offers HTTP/1.1 only
         */

        return lane->active ? 0 : 1;
    }

    room = (lane->limit.limit > lane->active)
           ? lane->limit.limit - lane->active : 0;

    if (lane->version == 1) {

        /*
         * A transfer a connection: while connections are being opened
         * (each a TLS handshake) the round trips of the others say
         * nothing of what more would cost; half as many again as are
         * open, at a time
         */

        capacity = lane->conns.open + ngx_max(lane->conns.open / 2, 8);

        return (capacity > lane->active)
               ? ngx_min(room, capacity - lane->active) : 0;
    }

    if (lane->version != 2) {
        return room;
    }

    /* only connections past their handshake carry streams */

    capacity = lane->conns.ready * NGX_ACS_CURL_STREAMS;

    if (lane->active < capacity) {
        return ngx_min(room, capacity - lane->active);
    }

    /*
     * Full: a transfer that may open a connection at a time, while the
     * limit needs more connections than are being opened
     */

    need = (lane->limit.limit > capacity)
           ? (lane->limit.limit - capacity + NGX_ACS_CURL_STREAMS - 1)
             / NGX_ACS_CURL_STREAMS
           : 0;

    opening = lane->conns.open - lane->conns.ready + lane->conns.asked;

    return (opening < need && lane->conns.open < lane->conns_max)
           ? ngx_min(room, 1) : 0;
}


ngx_uint_t
ngx_acs_lane_cap(ngx_acs_lane_t *lane)
{
    return ngx_max(lane->limit.limit / NGX_ACS_HANDLE_SHARE, 1);
}


ngx_uint_t
ngx_acs_lane_pipewait(ngx_acs_lane_t *lane)
{
    if (!lane->http2 || lane->version == 1) {
        return 0;
    }

    /* not known yet: the first connection tells, the others wait for it */

    return lane->version == 0
           || lane->active < lane->conns.ready * NGX_ACS_CURL_STREAMS;
}


/*
 * Counted once curl has the transfer: one that failed to start opens
 * nothing, and would hold a place of a connection being opened for good
 */

void
ngx_acs_lane_started(ngx_acs_lane_t *lane, ngx_acs_http_t *h)
{
    lane->active++;

    if (!h->pipewait && lane->version == 2) {
        /* it may open a connection */
        lane->conns.asked++;
    }
}


void
ngx_acs_lane_answer(ngx_acs_lane_t *lane, ngx_acs_http_t *h,
    ngx_acs_verdict_e verdict, ngx_msec_t started)
{
    ngx_msec_t  now;

    now = ngx_current_msec;

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "acs_notify: lane \"%V\": verdict %d, round trip %uLus, "
                   "%ui in flight, limit %ui", &lane->hub->name, verdict,
                   h->rtt, lane->active, lane->limit.limit);

    lane->active--;
    lane->rate_done++;

    if (!h->pipewait && lane->version == 2 && !h->opened
        && lane->conns.asked)
    {
        /* it was to open a connection; libcurl found a stream instead */
        lane->conns.asked--;
    }

    if (h->version && h->version != lane->version) {
        lane->version = h->version;
        ngx_acs_limit_ceiling(&lane->limit, ngx_acs_lane_ceiling(lane));

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "acs_notify: Notification Hubs \"%V\" answers over "
                      "HTTP/%s, up to %ui pushes in flight", &lane->hub->name,
                      (lane->version == 2) ? "2" : "1.1",
                      lane->limit.ceiling);
    }

    switch (verdict) {

    case NGX_ACS_VERDICT_SENT:
    case NGX_ACS_VERDICT_GONE:
    case NGX_ACS_VERDICT_RENEW:
    case NGX_ACS_VERDICT_DENIED:
    case NGX_ACS_VERDICT_ABSENT:
    case NGX_ACS_VERDICT_REFUSED:

        /* the hub works, whatever it thought of the push */

        if (h->rtt) {
            ngx_acs_limit_sample(&lane->limit, h->rtt, lane->active + 1,
                                 started, now);
        }

        if (lane->probing) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "acs_notify: Notification Hubs \"%V\" answers "
                          "again, its pushes go on", &lane->hub->name);

            lane->probing = 0;
            lane->limit.slow_start = 1;
        }

        lane->failures = 0;
        lane->wait = 0;
        lane->last_ok = now;
        break;

    case NGX_ACS_VERDICT_THROTTLED:
    case NGX_ACS_VERDICT_FAILED:
    case NGX_ACS_VERDICT_UNREACHABLE:
        ngx_acs_limit_backoff(&lane->limit, lane->active + 1, now);
        lane->failures++;

        if (lane->probing
            || verdict == NGX_ACS_VERDICT_UNREACHABLE
            || (lane->failures >= NGX_ACS_BRAKE_FAILURES
                && now - lane->last_ok >= NGX_ACS_BRAKE_QUIET))
        {
            ngx_acs_lane_brake(lane, h, verdict);
        }

        break;
    }

    ngx_acs_lane_rate(lane);

    /* the gauges: by the engine's pass that every answer posts */
}


/*
 * The lane stops starting transfers for a while.  Its queued jobs wait:
 * a retry of each would only multiply the failures.
 */

static void
ngx_acs_lane_brake(ngx_acs_lane_t *lane, ngx_acs_http_t *h,
    ngx_acs_verdict_e verdict)
{
    ngx_msec_t  wait;

    /* the other transfers of a round fail too: one brake a round */

    if (lane->braked) {
        return;
    }

    if (h->retry_after && verdict == NGX_ACS_VERDICT_THROTTLED) {
        wait = (ngx_msec_t) ngx_min(h->retry_after, NGX_ACS_BRAKE_HONOUR)
               * 1000;

    } else {
        wait = lane->wait ? ngx_min(lane->wait * 2, NGX_ACS_BRAKE_MAX)
                          : NGX_ACS_BRAKE_BASE;
        lane->wait = wait;
    }

    if (verdict == NGX_ACS_VERDICT_UNREACHABLE) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "acs_notify: no connection to Notification Hubs \"%V\" "
                      "(%ui in a row), its pushes wait %Mms: %s",
                      &lane->hub->name, lane->failures, wait, lane->error);

    } else {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "acs_notify: Notification Hubs \"%V\" fails (%ui "
                      "answers in a row, the last: %s), its pushes wait "
                      "%Mms, then one is tried", &lane->hub->name,
                      lane->failures, lane->error, wait);
    }

    lane->braked = 1;
    lane->probing = 0;

    /* what it sends braked and probing says nothing of what the hub can */

    lane->rate = 0;
    lane->rate_backlog = 0;

    ngx_add_timer(&lane->wake, wait);
}


void
ngx_acs_lane_wake(ngx_acs_lane_t *lane)
{
    lane->braked = 0;
    lane->probing = 1;
}


/* answers a second over a window in which pushes waited all along */

static void
ngx_acs_lane_rate(ngx_acs_lane_t *lane)
{
    ngx_msec_t  elapsed;

    elapsed = ngx_current_msec - lane->rate_start;

    if (elapsed < NGX_ACS_RATE_WINDOW) {
        return;
    }

    if (lane->rate_backlog && lane->queued) {
        lane->rate = lane->rate
                     ? (lane->rate + lane->rate_done * 1000 / elapsed) / 2
                     : lane->rate_done * 1000 / elapsed;

    } else {
        /* it sent what it had: its rate says nothing of what it can */
        lane->rate = 0;
    }

    lane->rate_start = ngx_current_msec;
    lane->rate_done = 0;
    lane->rate_backlog = (lane->queued != 0 && !lane->braked
                          && !lane->probing);
}


ngx_int_t
ngx_acs_lane_admit(ngx_acs_lane_t *lane, ngx_uint_t n, ngx_uint_t calls,
    ngx_msec_t ms, time_t *retry)
{
    ngx_uint_t  ahead;

    if (lane->braked) {
        *retry = (time_t) ((lane->wait ? lane->wait : 1000) + 999) / 1000;
        return NGX_BUSY;
    }

    /* calls go before what waits */

    if (calls
        || lane->rate == 0
        || ngx_current_msec - lane->rate_start > 2 * NGX_ACS_RATE_WINDOW)
    {
        return NGX_OK;
    }

    /* with a fifth to spare for the hub's answers and a slower turn */

    ahead = lane->queued + n;

    if ((uint64_t) ahead * 1000 * 5 <= (uint64_t) lane->rate * ms * 4) {
        return NGX_OK;
    }

    *retry = (time_t) ngx_min(ngx_max(ahead / lane->rate, 1), 60);

    return NGX_AGAIN;
}


void
ngx_acs_lane_gauges(ngx_acs_lane_t *lane)
{
    ngx_acs_stats_lane(lane->hub->index, lane->limit.limit, lane->active,
                       lane->queued, lane->limit.srtt, lane->limit.rtt_min,
                       lane->version, lane->conns.open,
                       lane->conns.opened - lane->reported);

    lane->reported = lane->conns.opened;
}
