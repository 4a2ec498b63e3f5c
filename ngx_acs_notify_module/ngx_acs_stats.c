
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * One block of ngx_atomic_t in a shared zone; every worker adds to it with
 * ngx_atomic_fetch_add(), the status handler reads it.  The zone keeps its
 * counters across reloads while the number of hubs stays the same (its
 * size depends on it).
 *
 * Counters are summed over workers as they count.  Gauges (queued, in
 * flight, connections, the lanes' figures) are a worker's own, in a slot
 * that names its pid: the status page sums the slots of processes alive,
 * so the share of a worker that died (kill -9, a crash) leaves the page at
 * once, and its replacement takes the slot over, zeroed.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_http.h"
#include "ngx_acs_notify.h"
#include "ngx_acs_json.h"
#include "ngx_acs_prom.h"
#include "ngx_acs_sas.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_route.h"
#include "ngx_acs_trace.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_HIST_BUCKETS   12
#define NGX_ACS_STATS_SLOTS    128      /* workers alive at once, reloads
                                           included; more share slot 0 */



typedef struct {
    ngx_atomic_t                buckets[NGX_ACS_HIST_BUCKETS + 1];
    ngx_atomic_t                sum;
    ngx_atomic_t                count;
} ngx_acs_hist_t;


/* the names, in the order of the counters */

/* requests: by ngx_acs_result_e, named by ngx_acs_result_name() */


static char  *ngx_acs_outcomes[] = {
    [NGX_ACS_OUT_SENT] = "sent",
    [NGX_ACS_OUT_GONE] = "gone",
    [NGX_ACS_OUT_REJECTED] = "rejected",
    [NGX_ACS_OUT_FAILED] = "failed",
    [NGX_ACS_OUT_DUPLICATE] = "duplicate",
    [NGX_ACS_OUT_EXPIRED] = "expired"
};

/* a name for every outcome, or this does not compile */
typedef char  ngx_acs_outcomes_named[
    (sizeof(ngx_acs_outcomes) / sizeof(char *) == NGX_ACS_OUT_MAX) ? 1 : -1];


/* stale events: calls over acs_notify_call_ttl, others over max_age */
static char  *ngx_acs_stale_kinds[] = { "other", "call" };


/* a host of hubs (a lane), as the status page shows it */

typedef struct {
    ngx_uint_t                  limit;
    ngx_uint_t                  in_flight;
    ngx_uint_t                  queued;
    uint64_t                    srtt;          /* us, mean of workers */
    uint64_t                    rtt_min;       /* us, least */
    ngx_uint_t                  version;
    ngx_uint_t                  open;
    ngx_uint_t                  opened;
    ngx_uint_t                  throttled;     /* 429s */
    ngx_str_t                   hubs;          /* "main,voip" */
} ngx_acs_stats_host_t;


/* the metrics of a host of hubs: a field of ngx_acs_stats_host_t each */

typedef struct {
    char                       *name;
    char                       *type;
    char                       *label;
    char                       *help;
    size_t                      offset;
    ngx_uint_t                  us;        /* unsigned:1, a uint64_t of
                                              microseconds, in seconds */
} ngx_acs_host_metric_t;


#define ngx_acs_host_field(f)  offsetof(ngx_acs_stats_host_t, f)

static ngx_acs_host_metric_t  ngx_acs_host_metrics[] = {
    { "limit", "gauge", "",
      "Pushes the workers may have in flight to the host now.",
      ngx_acs_host_field(limit), 0 },
    { "in_flight", "gauge", "", "Pushes in flight to the host.",
      ngx_acs_host_field(in_flight), 0 },
    { "queued", "gauge", "", "Pushes waiting for the host's limit.",
      ngx_acs_host_field(queued), 0 },
    { "rtt_seconds", "gauge", ",stat=\"smoothed\"",
      "The host's round trip: smoothed (mean of workers), least (min).",
      ngx_acs_host_field(srtt), 1 },
    { "rtt_seconds", "gauge", ",stat=\"min\"", NULL,
      ngx_acs_host_field(rtt_min), 1 },
    { "http_version", "gauge", "",
      "HTTP version the host answers with (2, 1; 0 not known yet).",
      ngx_acs_host_field(version), 0 },
    { "connections", "gauge", "", "Connections open to the host.",
      ngx_acs_host_field(open), 0 },
    { "connections_opened_total", "counter", "",
      "Connections opened to the host.", ngx_acs_host_field(opened), 0 },
    { "throttled_total", "counter", "", "Answers 429 of the host's hubs.",
      ngx_acs_host_field(throttled), 0 }
};

#define NGX_ACS_HOST_METRICS                                                 \
    (sizeof(ngx_acs_host_metrics) / sizeof(ngx_acs_host_metric_t))




static char  *ngx_acs_methods[] = { "PUT", "GET", "DELETE", "other" };
static char  *ngx_acs_classes[] = { "2xx", "4xx", "5xx" };


/* milliseconds */
static ngx_msec_t  ngx_acs_bounds[NGX_ACS_HIST_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000
};


/* a hub's counters */

typedef struct {
    ngx_atomic_t                answers[NGX_ACS_ANSWERS];
    ngx_atomic_t                opened;        /* connections, lane's */
} ngx_acs_stats_hub_t;


/* a lane's gauges in one worker, in the row of its first hub */

typedef struct {
    ngx_atomic_t                limit;
    ngx_atomic_t                in_flight;
    ngx_atomic_t                queued;
    ngx_atomic_t                srtt;          /* us */
    ngx_atomic_t                rtt_min;       /* us */
    ngx_atomic_t                version;       /* HTTP 1, 2; 0: not known */
    ngx_atomic_t                open;          /* connections */
} ngx_acs_stats_lane_t;


/* a worker's gauges */

typedef struct {
    ngx_atomic_t                pid;           /* 0: free */
    ngx_atomic_t                queue;
    ngx_atomic_t                in_flight;
    ngx_atomic_t                connections;
    ngx_acs_stats_lane_t        lanes[1];      /* nhubs rows */
} ngx_acs_stats_slot_t;


typedef struct {
    ngx_atomic_t                requests[NGX_ACS_RESULTS];
    ngx_atomic_t                events[NGX_ACS_EVENT_TYPES];
    ngx_atomic_t                pushes[NGX_ACS_PLATFORMS][NGX_ACS_OUT_MAX];
    ngx_atomic_t                registrations[4][3];
    ngx_atomic_t                stale[2];      /* other, call */
    ngx_atomic_t                retries;
    ngx_acs_hist_t              delivery;
    ngx_acs_hist_t              hub_time;
    ngx_acs_stats_hub_t         hubs[1];       /* nhubs rows, then the
                                                  slots */
} ngx_acs_stats_t;


typedef struct {
    ngx_acs_stats_t            *stats;
    ngx_uint_t                  nhubs;
} ngx_acs_stats_zone_t;


/* what the status page shows of the gauges: the live slots summed */

typedef struct {
    ngx_uint_t                  queue;
    ngx_uint_t                  in_flight;
    ngx_uint_t                  connections;
} ngx_acs_stats_sum_t;




static size_t ngx_acs_stats_size(ngx_uint_t nhubs);
static ngx_acs_stats_slot_t *ngx_acs_stats_slot(ngx_uint_t i);
static ngx_uint_t ngx_acs_stats_alive(ngx_atomic_uint_t pid);
static void ngx_acs_stats_gauges(ngx_acs_stats_sum_t *sum);
static ngx_uint_t ngx_acs_stats_host(ngx_http_request_t *r, ngx_uint_t i,
    ngx_acs_stats_host_t *host);
static ngx_int_t ngx_acs_stats_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_acs_hist_add(ngx_acs_hist_t *h, ngx_msec_t ms);
static ngx_int_t ngx_acs_stats_json(ngx_http_request_t *r, ngx_str_t *out);
static ngx_int_t ngx_acs_stats_prometheus(ngx_http_request_t *r,
    ngx_str_t *out);
static void ngx_acs_json_hist(ngx_acs_gen_t *gen, char *name,
    ngx_acs_hist_t *h);
static void ngx_acs_prom_hist(ngx_acs_prom_t *w, const char *name,
    const char *help, ngx_acs_hist_t *h);
static void ngx_acs_prom_host(ngx_acs_prom_t *w,
    ngx_acs_host_metric_t *metric, ngx_str_t *name,
    ngx_acs_stats_host_t *host);
static size_t ngx_acs_registry_size(ngx_http_request_t *r);


static ngx_acs_stats_t       *ngx_acs_stats;
static ngx_uint_t             ngx_acs_stats_nhubs;
static ngx_acs_stats_slot_t  *ngx_acs_stats_own;

static ngx_acs_stats_devices_pt  ngx_acs_stats_devices_handler;
static void                     *ngx_acs_stats_devices_data;
static ngx_str_t         ngx_acs_stats_zone_name =
    ngx_string("acs_notify_stats");


/*
 * The zone's size grows with the number of hubs, a page a hub: a reload
 * that changes it gets a new zone (nginx reuses a zone only at the same
 * size), so the counters' layout never changes inside a zone and an old
 * layout is never left behind in it.
 */

ngx_int_t
ngx_acs_stats_init_conf(ngx_conf_t *cf, ngx_uint_t nhubs, void **zone)
{
    size_t                 size;
    ngx_shm_zone_t        *shm_zone;
    ngx_acs_stats_zone_t  *z;

    z = ngx_pcalloc(cf->pool, sizeof(ngx_acs_stats_zone_t));
    if (z == NULL) {
        return NGX_ERROR;
    }

    z->nhubs = nhubs;
    *zone = z;

    size = ngx_align(ngx_acs_stats_size(nhubs), ngx_pagesize)
           + (8 + nhubs) * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_acs_stats_zone_name, size,
                                     &ngx_acs_stats_zone_name);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_acs_stats_init_zone;
    shm_zone->data = z;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_stats_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_acs_stats_zone_t  *oz = data;

    size_t                 size;
    ngx_slab_pool_t       *shpool;
    ngx_acs_stats_zone_t  *z;

    z = shm_zone->data;

    if (oz && oz->nhubs == z->nhubs) {
        /* a reload: the counters go on */
        z->stats = oz->stats;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    size = ngx_acs_stats_size(z->nhubs);

    z->stats = ngx_slab_calloc(shpool, size);
    if (z->stats == NULL) {
        return NGX_ERROR;
    }

    shpool->data = z->stats;

    return NGX_OK;
}


/*
 * The counters of this process' configuration; not set while a zone is
 * made: the master makes the zones of a reload that may still fail, and
 * a worker it starts later must count in the configuration it runs.
 */

void
ngx_acs_stats_init_process(void *zone)
{
    ngx_acs_stats_zone_t  *z = zone;

    size_t                 size;
    ngx_uint_t             i;
    ngx_atomic_uint_t      pid;
    ngx_acs_stats_slot_t  *slot;

    ngx_acs_stats = z->stats;
    ngx_acs_stats_nhubs = z->nhubs;

    size = sizeof(ngx_acs_stats_slot_t)
           + (ngx_max(z->nhubs, 1) - 1) * sizeof(ngx_acs_stats_lane_t);

    /* slot 0 is shared by those that find no other */

    ngx_acs_stats_own = ngx_acs_stats_slot(0);

    for (i = 1; i < NGX_ACS_STATS_SLOTS; i++) {
        slot = ngx_acs_stats_slot(i);
        pid = slot->pid;

        if ((pid == 0 || !ngx_acs_stats_alive(pid))
            && ngx_atomic_cmp_set(&slot->pid, pid, (ngx_atomic_uint_t) ngx_pid))
        {
            /* a dead worker's gauges go with it */
            ngx_memzero((u_char *) slot + sizeof(ngx_atomic_t),
                        size - sizeof(ngx_atomic_t));

            ngx_acs_stats_own = slot;
            break;
        }
    }
}


void
ngx_acs_stats_exit_process(void)
{
    size_t  size;

    if (ngx_acs_stats_own == NULL
        || ngx_acs_stats_own == ngx_acs_stats_slot(0))
    {
        return;
    }

    size = sizeof(ngx_acs_stats_slot_t)
           + (ngx_max(ngx_acs_stats_nhubs, 1) - 1)
             * sizeof(ngx_acs_stats_lane_t);

    ngx_memzero((u_char *) ngx_acs_stats_own + sizeof(ngx_atomic_t),
                size - sizeof(ngx_atomic_t));

    ngx_acs_stats_own->pid = 0;
    ngx_acs_stats_own = NULL;
}


static size_t
ngx_acs_stats_size(ngx_uint_t nhubs)
{
    nhubs = ngx_max(nhubs, 1);

    return sizeof(ngx_acs_stats_t) + (nhubs - 1) * sizeof(ngx_acs_stats_hub_t)
           + NGX_ACS_STATS_SLOTS
             * (sizeof(ngx_acs_stats_slot_t)
                + (nhubs - 1) * sizeof(ngx_acs_stats_lane_t));
}


static ngx_acs_stats_slot_t *
ngx_acs_stats_slot(ngx_uint_t i)
{
    size_t      size;
    ngx_uint_t  nhubs;

    nhubs = ngx_max(ngx_acs_stats_nhubs, 1);
    size = sizeof(ngx_acs_stats_slot_t)
           + (nhubs - 1) * sizeof(ngx_acs_stats_lane_t);

    return (ngx_acs_stats_slot_t *) ((u_char *) &ngx_acs_stats->hubs[nhubs]
                                     + i * size);
}


/* a process that may still hold gauges (another user's: alive too) */

static ngx_uint_t
ngx_acs_stats_alive(ngx_atomic_uint_t pid)
{
    return kill((ngx_pid_t) pid, 0) == 0 || ngx_errno != NGX_ESRCH;
}


/* the gauges of the slots of processes alive, summed */

static void
ngx_acs_stats_gauges(ngx_acs_stats_sum_t *sum)
{
    ngx_uint_t             i;
    ngx_acs_stats_slot_t  *slot;

    ngx_memzero(sum, sizeof(ngx_acs_stats_sum_t));

    for (i = 0; i < NGX_ACS_STATS_SLOTS; i++) {
        slot = ngx_acs_stats_slot(i);

        if (i && (slot->pid == 0 || !ngx_acs_stats_alive(slot->pid))) {
            continue;
        }

        sum->queue += (ngx_atomic_int_t) slot->queue;
        sum->in_flight += (ngx_atomic_int_t) slot->in_flight;
        sum->connections += (ngx_atomic_int_t) slot->connections;
    }
}


/*
 * The figures of the lane whose first hub is hub i, summed over live
 * workers: 0 when hub i shares the lane of a hub before it
 */

static ngx_uint_t
ngx_acs_stats_host(ngx_http_request_t *r, ngx_uint_t i,
    ngx_acs_stats_host_t *host)
{
    u_char                           *p;
    ngx_uint_t                        j, n, workers;
    ngx_acs_hub_t                    *hub;
    ngx_acs_stats_lane_t             *lane;
    ngx_acs_stats_slot_t             *slot;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_acs_notify_module);
    hub = amcf->hubs.elts;

    /* the lanes' rule: same host, connect_to and http2 (ngx_acs_lane.c) */

#define ngx_acs_same_lane(a, b)                                              \
    ((a)->http2 == (b)->http2                                                \
     && (a)->host.len == (b)->host.len                                       \
     && (a)->connect_to.len == (b)->connect_to.len                           \
     && ngx_strncmp((a)->host.data, (b)->host.data, (a)->host.len) == 0      \
     && ngx_strncmp((a)->connect_to.data, (b)->connect_to.data,              \
                    (a)->connect_to.len) == 0)

    for (j = 0; j < i; j++) {
        if (ngx_acs_same_lane(&hub[j], &hub[i])) {
            return 0;
        }
    }

    ngx_memzero(host, sizeof(ngx_acs_stats_host_t));

    n = 0;
    for (j = i; j < amcf->hubs.nelts && j < ngx_acs_stats_nhubs; j++) {
        if (ngx_acs_same_lane(&hub[j], &hub[i])) {
            n += hub[j].name.len + 1;
            host->throttled +=
                           ngx_acs_stats->hubs[j].answers[NGX_ACS_ANSWER_429];
        }
    }

    host->hubs.data = ngx_pnalloc(r->pool, n);
    if (host->hubs.data == NULL) {
        return 0;
    }

    p = host->hubs.data;
    for (j = i; j < amcf->hubs.nelts && j < ngx_acs_stats_nhubs; j++) {
        if (ngx_acs_same_lane(&hub[j], &hub[i])) {
            if (p != host->hubs.data) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, hub[j].name.data, hub[j].name.len);
        }
    }

#undef ngx_acs_same_lane

    host->hubs.len = p - host->hubs.data;
    host->opened = ngx_acs_stats->hubs[i].opened;

    workers = 0;

    for (j = 0; j < NGX_ACS_STATS_SLOTS; j++) {
        slot = ngx_acs_stats_slot(j);

        if (j && (slot->pid == 0 || !ngx_acs_stats_alive(slot->pid))) {
            continue;
        }

        lane = &slot->lanes[i];

        host->limit += lane->limit;
        host->in_flight += lane->in_flight;
        host->queued += lane->queued;
        host->open += lane->open;
        host->version = ngx_max(host->version, (ngx_uint_t) lane->version);

        if (lane->srtt) {
            host->srtt += lane->srtt;
            workers++;
        }

        if (lane->rtt_min
            && (host->rtt_min == 0 || lane->rtt_min < host->rtt_min))
        {
            host->rtt_min = lane->rtt_min;
        }
    }

    if (workers) {
        host->srtt /= workers;
    }

    return 1;
}


void
ngx_acs_stats_request(ngx_acs_result_e result)
{
    if (ngx_acs_stats == NULL || result == NGX_ACS_RESULT_NONE
        || result >= NGX_ACS_RESULTS)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(&ngx_acs_stats->requests[result], 1);
}


void
ngx_acs_stats_event(ngx_str_t *type)
{
    if (ngx_acs_stats == NULL) {
        return;
    }

    (void) ngx_atomic_fetch_add(
                        &ngx_acs_stats->events[ngx_acs_route_type(type)], 1);
}


void
ngx_acs_stats_registration(ngx_uint_t method, ngx_uint_t status)
{
    ngx_uint_t  m, c;

    if (ngx_acs_stats == NULL) {
        return;
    }

    m = (method == NGX_HTTP_PUT) ? 0
        : (method == NGX_HTTP_GET) ? 1
        : (method == NGX_HTTP_DELETE) ? 2 : 3;

    c = (status < 300) ? 0 : (status < 500) ? 1 : 2;

    (void) ngx_atomic_fetch_add(&ngx_acs_stats->registrations[m][c], 1);
}


void
ngx_acs_stats_push(ngx_uint_t platform, ngx_acs_outcome_e outcome)
{
    if (ngx_acs_stats == NULL) {
        return;
    }

    if (platform >= NGX_ACS_PLATFORMS) {
        platform = 0;
    }

    (void) ngx_atomic_fetch_add(&ngx_acs_stats->pushes[platform][outcome], 1);
}


void
ngx_acs_stats_stale(ngx_uint_t call)
{
    if (ngx_acs_stats) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats->stale[call ? 1 : 0], 1);
    }
}


void
ngx_acs_stats_delivery_time(ngx_msec_t ms)
{
    if (ngx_acs_stats) {
        ngx_acs_hist_add(&ngx_acs_stats->delivery, ms);
    }
}


void
ngx_acs_stats_hub_answer(ngx_uint_t hub, ngx_acs_answer_e answer,
    ngx_msec_t ms)
{
    if (ngx_acs_stats == NULL || hub >= ngx_acs_stats_nhubs) {
        return;
    }

    (void) ngx_atomic_fetch_add(&ngx_acs_stats->hubs[hub].answers[answer], 1);

    if (answer != NGX_ACS_ANSWER_ERROR) {
        ngx_acs_hist_add(&ngx_acs_stats->hub_time, ms);
    }
}


void
ngx_acs_stats_retry(void)
{
    if (ngx_acs_stats) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats->retries, 1);
    }
}


void
ngx_acs_stats_queue(ngx_int_t delta)
{
    if (ngx_acs_stats_own) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats_own->queue, delta);
    }
}


void
ngx_acs_stats_connections(ngx_int_t delta)
{
    if (ngx_acs_stats_own) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats_own->connections, delta);
    }
}


void
ngx_acs_stats_in_flight(ngx_int_t delta)
{
    if (ngx_acs_stats_own) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats_own->in_flight, delta);
    }
}


void
ngx_acs_stats_lane(ngx_uint_t hub, ngx_uint_t limit, ngx_uint_t in_flight,
    ngx_uint_t queued, uint64_t srtt, uint64_t rtt_min, ngx_uint_t version,
    ngx_uint_t open, ngx_uint_t opened)
{
    ngx_acs_stats_lane_t  *lane;

    if (ngx_acs_stats_own == NULL || hub >= ngx_acs_stats_nhubs) {
        return;
    }

    /* one writer: plain stores (slot 0 is approximate when shared) */

    lane = &ngx_acs_stats_own->lanes[hub];

    lane->limit = limit;
    lane->in_flight = in_flight;
    lane->queued = queued;
    lane->srtt = (ngx_atomic_uint_t) srtt;
    lane->rtt_min = (ngx_atomic_uint_t) rtt_min;
    lane->version = version;
    lane->open = open;

    if (opened) {
        (void) ngx_atomic_fetch_add(&ngx_acs_stats->hubs[hub].opened, opened);
    }
}


static void
ngx_acs_hist_add(ngx_acs_hist_t *h, ngx_msec_t ms)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_ACS_HIST_BUCKETS; i++) {
        if (ms <= ngx_acs_bounds[i]) {
            break;
        }
    }

    /* per bucket here; cumulative when printed */

    (void) ngx_atomic_fetch_add(&h->buckets[i], 1);
    (void) ngx_atomic_fetch_add(&h->sum, ms);
    (void) ngx_atomic_fetch_add(&h->count, 1);
}


ngx_int_t
ngx_acs_stats_handler(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_str_t   body, format;
    ngx_uint_t  prometheus;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_acs_trace_asked(r)) {
        /* ?trace&user=RAW_ID, ?trace&event=ID: acs_notify_trace */
        return ngx_acs_trace_handler(r);
    }

    if (ngx_acs_stats == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    prometheus = (ngx_http_arg(r, (u_char *) "format", 6, &format) == NGX_OK
                  && format.len == 10
                  && ngx_strncmp(format.data, "prometheus", 10) == 0);

    rc = prometheus ? ngx_acs_stats_prometheus(r, &body)
                    : ngx_acs_stats_json(r, &body);
    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (prometheus) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/plain; version=0.0.4; charset=utf-8");

    } else {
        ngx_str_set(&r->headers_out.content_type, "application/json");
    }

    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = body.len;

    return ngx_acs_send(r, NGX_HTTP_OK, &body);
}


void
ngx_acs_stats_devices(ngx_acs_stats_devices_pt devices, void *data)
{
    ngx_acs_stats_devices_handler = devices;
    ngx_acs_stats_devices_data = data;
}


static size_t
ngx_acs_registry_size(ngx_http_request_t *r)
{
    if (ngx_acs_stats_devices_handler == NULL) {
        return 0;
    }

    return ngx_acs_stats_devices_handler(ngx_acs_stats_devices_data,
                                         r->connection->log);
}


static ngx_int_t
ngx_acs_stats_json(ngx_http_request_t *r, ngx_str_t *out)
{
    ngx_uint_t                        i, j;
    ngx_acs_gen_t                     gen;
    ngx_acs_hub_t                    *hub;
    ngx_acs_stats_t                  *s;
    ngx_acs_stats_sum_t               sum;
    ngx_acs_stats_host_t              host;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_acs_notify_module);
    s = ngx_acs_stats;

    ngx_acs_stats_gauges(&sum);

    if (ngx_acs_gen_init(&gen, r->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_open(&gen);

    ngx_acs_gen_key(&gen, "requests");
    ngx_acs_gen_map_open(&gen);
    for (i = NGX_ACS_RESULT_NONE + 1; i < NGX_ACS_RESULTS; i++) {
        ngx_acs_gen_num(&gen, (char *) ngx_acs_result_name(i)->data,
                        s->requests[i]);
    }
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "events");
    ngx_acs_gen_map_open(&gen);
    for (i = 0; i < NGX_ACS_EVENT_TYPES; i++) {
        ngx_acs_gen_num(&gen, ngx_acs_route_type_name(i), s->events[i]);
    }
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "pushes");
    ngx_acs_gen_map_open(&gen);
    for (i = 1; i < NGX_ACS_PLATFORMS; i++) {
        ngx_acs_gen_key(&gen, (char *) ngx_acs_platform(i)->name.data);
        ngx_acs_gen_map_open(&gen);
        for (j = 0; j < NGX_ACS_OUT_MAX; j++) {
            ngx_acs_gen_num(&gen, ngx_acs_outcomes[j], s->pushes[i][j]);
        }
        ngx_acs_gen_map_close(&gen);
    }
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "hubs");
    ngx_acs_gen_map_open(&gen);
    hub = amcf->hubs.elts;
    for (i = 0; i < amcf->hubs.nelts && i < ngx_acs_stats_nhubs; i++) {
        ngx_acs_gen_str(&gen, &hub[i].name);
        ngx_acs_gen_map_open(&gen);
        for (j = 0; j < NGX_ACS_ANSWERS; j++) {
            ngx_acs_gen_num(&gen, ngx_acs_hub_answer_name(j),
                            s->hubs[i].answers[j]);
        }
        ngx_acs_gen_map_close(&gen);
    }
    ngx_acs_gen_map_close(&gen);

    /* per host of hubs (a lane): what concurrency the hub gets */

    ngx_acs_gen_key(&gen, "hub_hosts");
    ngx_acs_gen_array_open(&gen);
    for (i = 0; i < amcf->hubs.nelts && i < ngx_acs_stats_nhubs; i++) {
        if (!ngx_acs_stats_host(r, i, &host)) {
            continue;
        }

        ngx_acs_gen_map_open(&gen);
        ngx_acs_gen_pair(&gen, "host", &hub[i].host);
        if (hub[i].connect_to.len) {
            ngx_acs_gen_key(&gen, "connect_to");
            ngx_acs_gen_cstr(&gen, (char *) hub[i].connect_to.data
                                   + hub[i].host.len + sizeof(":443:") - 1);
        }
        ngx_acs_gen_pair(&gen, "hubs", &host.hubs);
        ngx_acs_gen_key(&gen, "protocol");
        ngx_acs_gen_cstr(&gen, (host.version == 2) ? "h2"
                               : host.version ? "h1" : "unknown");
        ngx_acs_gen_num(&gen, "limit", host.limit);
        ngx_acs_gen_num(&gen, "in_flight", host.in_flight);
        ngx_acs_gen_num(&gen, "queued", host.queued);
        ngx_acs_gen_num(&gen, "srtt_us", host.srtt);
        ngx_acs_gen_num(&gen, "rtt_min_us", host.rtt_min);
        ngx_acs_gen_num(&gen, "connections", host.open);
        ngx_acs_gen_num(&gen, "connections_opened", host.opened);
        ngx_acs_gen_num(&gen, "throttled", host.throttled);
        ngx_acs_gen_map_close(&gen);
    }
    ngx_acs_gen_array_close(&gen);

    ngx_acs_gen_key(&gen, "registrations");
    ngx_acs_gen_map_open(&gen);
    for (i = 0; i < 4; i++) {
        ngx_acs_gen_key(&gen, ngx_acs_methods[i]);
        ngx_acs_gen_map_open(&gen);
        for (j = 0; j < 3; j++) {
            ngx_acs_gen_num(&gen, ngx_acs_classes[j],
                            s->registrations[i][j]);
        }
        ngx_acs_gen_map_close(&gen);
    }
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "stale_events");
    ngx_acs_gen_map_open(&gen);
    for (i = 0; i < 2; i++) {
        ngx_acs_gen_num(&gen, ngx_acs_stale_kinds[i], s->stale[i]);
    }
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_num(&gen, "retries", s->retries);
    ngx_acs_gen_num(&gen, "queue_depth", sum.queue);
    ngx_acs_gen_num(&gen, "in_flight", sum.in_flight);
    ngx_acs_gen_num(&gen, "hub_connections", sum.connections);
    ngx_acs_gen_num(&gen, "registry_size", ngx_acs_registry_size(r));

    j = 0;
    for (i = 0; i < NGX_ACS_PLATFORMS; i++) {
        j += s->pushes[i][NGX_ACS_OUT_DUPLICATE];
    }
    ngx_acs_gen_num(&gen, "dedup_hits", j);

    ngx_acs_json_hist(&gen, "delivery_latency_ms", &s->delivery);
    ngx_acs_json_hist(&gen, "hub_response_ms", &s->hub_time);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, out);
}


static void
ngx_acs_json_hist(ngx_acs_gen_t *gen, char *name, ngx_acs_hist_t *h)
{
    u_char            key[NGX_INT_T_LEN + 1];
    ngx_uint_t        i;
    ngx_atomic_int_t  cum;

    ngx_acs_gen_key(gen, name);
    ngx_acs_gen_map_open(gen);

    ngx_acs_gen_key(gen, "buckets");
    ngx_acs_gen_map_open(gen);

    cum = 0;
    for (i = 0; i <= NGX_ACS_HIST_BUCKETS; i++) {
        cum += h->buckets[i];

        if (i < NGX_ACS_HIST_BUCKETS) {
            *ngx_sprintf(key, "%M", ngx_acs_bounds[i]) = '\0';
            ngx_acs_gen_num(gen, (char *) key, cum);

        } else {
            ngx_acs_gen_num(gen, "+Inf", cum);
        }
    }

    ngx_acs_gen_map_close(gen);

    /* the count is the buckets' total: consistent even while they move */
    ngx_acs_gen_num(gen, "sum", h->sum);
    ngx_acs_gen_num(gen, "count", cum);

    ngx_acs_gen_map_close(gen);
}


/*
 * The Prometheus text format 0.0.4: # HELP and # TYPE once per metric,
 * then its samples; rejected and unavailable requests carry their reason
 * in a label of their own.  The text is written into a buffer that grows
 * as it fills (ngx_acs_prom.c), so no count of hubs, length of names or
 * size of counters can overflow it.
 */

static ngx_int_t
ngx_acs_stats_prometheus(ngx_http_request_t *r, ngx_str_t *out)
{
    u_char                           *colon;
    ngx_str_t                        *name;
    ngx_uint_t                        i, j, k, m, n, dups, *index;
    ngx_acs_hub_t                    *hub;
    ngx_acs_prom_t                    w;
    ngx_acs_stats_t                  *s;
    ngx_acs_stats_sum_t               sum;
    ngx_acs_stats_host_t             *hosts;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_acs_notify_module);
    s = ngx_acs_stats;

    ngx_acs_stats_gauges(&sum);

    if (ngx_acs_prom_init(&w, r->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_requests_total Event Grid requests by result.\n"
            "# TYPE acs_notify_requests_total counter\n");

    for (i = NGX_ACS_RESULT_NONE + 1; i < NGX_ACS_RESULTS; i++) {
        name = ngx_acs_result_name(i);
        colon = ngx_strlchr(name->data, name->data + name->len, ':');

        if (colon) {
            ngx_acs_prom_printf(&w, "acs_notify_requests_total{result=\"%*s\","
                                "reason=\"%s\"} %uA\n", colon - name->data,
                                name->data, colon + 1, s->requests[i]);

        } else {
            ngx_acs_prom_printf(&w, "acs_notify_requests_total{result="
                                "\"%V\"} %uA\n", name, s->requests[i]);
        }
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_events_total Events received, by type.\n"
            "# TYPE acs_notify_events_total counter\n");

    for (i = 0; i < NGX_ACS_EVENT_TYPES; i++) {
        ngx_acs_prom_printf(&w, "acs_notify_events_total{type=\"%s\"} %uA\n",
                            ngx_acs_route_type_name(i), s->events[i]);
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_pushes_total Pushes by platform and final "
            "outcome.\n"
            "# TYPE acs_notify_pushes_total counter\n");

    dups = 0;

    for (i = NGX_ACS_PLATFORM_APNS; i < NGX_ACS_PLATFORMS; i++) {
        for (j = 0; j < NGX_ACS_OUT_MAX; j++) {
            ngx_acs_prom_printf(&w, "acs_notify_pushes_total{platform=\"%V\","
                                "outcome=\"%s\"} %uA\n",
                                &ngx_acs_platform(i)->name,
                                ngx_acs_outcomes[j], s->pushes[i][j]);
        }

        dups += s->pushes[i][NGX_ACS_OUT_DUPLICATE];
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_hub_responses_total Notification Hubs answers "
            "by hub and status class (error: no answer).\n"
            "# TYPE acs_notify_hub_responses_total counter\n");

    hub = amcf->hubs.elts;

    for (i = 0; i < amcf->hubs.nelts && i < ngx_acs_stats_nhubs; i++) {
        for (j = 0; j < NGX_ACS_ANSWERS; j++) {
            ngx_acs_prom_printf(&w, "acs_notify_hub_responses_total{hub="
                                "\"%V\",status=\"%s\"} %uA\n", &hub[i].name,
                                ngx_acs_hub_answer_name(j),
                                s->hubs[i].answers[j]);
        }
    }

    /* per host of hubs (a lane): a metric after another, a line a host */

    hosts = ngx_pnalloc(r->pool, ngx_max(amcf->hubs.nelts, 1)
                                 * sizeof(ngx_acs_stats_host_t));
    index = ngx_pnalloc(r->pool, ngx_max(amcf->hubs.nelts, 1)
                                 * sizeof(ngx_uint_t));
    if (hosts == NULL || index == NULL) {
        return NGX_ERROR;
    }

    n = 0;
    for (i = 0; i < amcf->hubs.nelts && i < ngx_acs_stats_nhubs; i++) {
        if (ngx_acs_stats_host(r, i, &hosts[n])) {
            index[n++] = i;
        }
    }

    for (m = 0; m < NGX_ACS_HOST_METRICS; m++) {

        /* no help: more samples of the metric before */

        if (ngx_acs_host_metrics[m].help) {
            ngx_acs_prom_printf(&w, "# HELP acs_notify_hub_host_%s %s\n"
                                "# TYPE acs_notify_hub_host_%s %s\n",
                                ngx_acs_host_metrics[m].name,
                                ngx_acs_host_metrics[m].help,
                                ngx_acs_host_metrics[m].name,
                                ngx_acs_host_metrics[m].type);
        }

        for (k = 0; k < n; k++) {
            ngx_acs_prom_host(&w, &ngx_acs_host_metrics[m],
                              &hub[index[k]].host, &hosts[k]);
        }
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_registrations_total Registration API requests "
            "by method and status class.\n"
            "# TYPE acs_notify_registrations_total counter\n");

    for (i = 0; i < 4; i++) {
        for (j = 0; j < 3; j++) {
            ngx_acs_prom_printf(&w, "acs_notify_registrations_total{method="
                                "\"%s\",status=\"%s\"} %uA\n",
                                ngx_acs_methods[i], ngx_acs_classes[j],
                                s->registrations[i][j]);
        }
    }

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_stale_events_total Events not pushed because "
            "they arrived too old: calls over acs_notify_call_ttl, others "
            "over acs_notify_max_age.\n"
            "# TYPE acs_notify_stale_events_total counter\n"
            "acs_notify_stale_events_total{kind=\"%s\"} %uA\n"
            "acs_notify_stale_events_total{kind=\"%s\"} %uA\n",
            ngx_acs_stale_kinds[1], s->stale[1],
            ngx_acs_stale_kinds[0], s->stale[0]);

    ngx_acs_prom_printf(&w,
            "# HELP acs_notify_retries_total Push attempts scheduled again.\n"
            "# TYPE acs_notify_retries_total counter\n"
            "acs_notify_retries_total %uA\n"
            "# HELP acs_notify_dedup_hits_total Pushes skipped because the "
            "device already got the event.\n"
            "# TYPE acs_notify_dedup_hits_total counter\n"
            "acs_notify_dedup_hits_total %ui\n"
            "# HELP acs_notify_queue_depth Pushes not yet final, all "
            "workers.\n"
            "# TYPE acs_notify_queue_depth gauge\n"
            "acs_notify_queue_depth %ui\n"
            "# HELP acs_notify_in_flight Requests to Notification Hubs "
            "waiting for an answer, all workers.\n"
            "# TYPE acs_notify_in_flight gauge\n"
            "acs_notify_in_flight %ui\n"
            "# HELP acs_notify_hub_connections Sockets open to Notification "
            "Hubs (connections, name resolutions), all workers.\n"
            "# TYPE acs_notify_hub_connections gauge\n"
            "acs_notify_hub_connections %ui\n"
            "# HELP acs_notify_registry_registrations Registrations in the "
            "registry, expired ones not yet purged included.\n"
            "# TYPE acs_notify_registry_registrations gauge\n"
            "acs_notify_registry_registrations %uz\n",
            s->retries, dups, sum.queue, sum.in_flight, sum.connections,
            ngx_acs_registry_size(r));

    ngx_acs_prom_hist(&w, "acs_notify_delivery_latency_seconds",
                      "From the event's arrival to Notification Hubs' "
                      "acceptance of its push.", &s->delivery);
    ngx_acs_prom_hist(&w, "acs_notify_hub_response_seconds",
                      "Time of one request to Notification Hubs.",
                      &s->hub_time);

    return ngx_acs_prom_done(&w, out);
}


static void
ngx_acs_prom_hist(ngx_acs_prom_t *w, const char *name, const char *help,
    ngx_acs_hist_t *h)
{
    ngx_uint_t        i;
    ngx_atomic_int_t  cum;

    ngx_acs_prom_printf(w, "# HELP %s %s\n# TYPE %s histogram\n",
                        name, help, name);

    cum = 0;

    for (i = 0; i < NGX_ACS_HIST_BUCKETS; i++) {
        cum += h->buckets[i];
        ngx_acs_prom_printf(w, "%s_bucket{le=\"%M.%03M\"} %A\n", name,
                            ngx_acs_bounds[i] / 1000,
                            ngx_acs_bounds[i] % 1000, cum);
    }

    cum += h->buckets[NGX_ACS_HIST_BUCKETS];

    /* _count is the +Inf bucket, as the format requires, even mid-update */

    ngx_acs_prom_printf(w, "%s_bucket{le=\"+Inf\"} %A\n"
                        "%s_sum %uA.%03uA\n%s_count %A\n",
                        name, cum, name, h->sum / 1000, h->sum % 1000, name,
                        cum);
}


/* the sample of a metric of a host, a line */

static void
ngx_acs_prom_host(ngx_acs_prom_t *w, ngx_acs_host_metric_t *metric,
    ngx_str_t *name, ngx_acs_stats_host_t *host)
{
    u_char    *field;
    uint64_t   us;

    field = (u_char *) host + metric->offset;

    ngx_acs_prom_printf(w, "acs_notify_hub_host_%s{host=\"%V\",hubs=\"%V\"%s} ",
                        metric->name, name, &host->hubs, metric->label);

    if (metric->us) {
        us = *(uint64_t *) field;
        ngx_acs_prom_printf(w, "%uL.%06uL\n", us / 1000000, us % 1000000);
        return;
    }

    ngx_acs_prom_printf(w, "%ui\n", *(ngx_uint_t *) field);
}
