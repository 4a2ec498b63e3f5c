
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The push engine of a worker (docs/dispatch.md, "How pushes flow").
 * Jobs wait in lanes, one per hub host (the hubs of a host share its
 * connections, ngx_acs_lane.c), calls before chat, and at most the lane's
 * limit of them are transfers in libcurl's multi handle at once (a limit
 * that follows the hub's round trip and answers, under max_connections),
 * so that every libcurl call costs the same at any depth; a device handle
 * has at most a quarter of them.
 *
 *   start     the payload is rendered the first time a job of the event
 *             and platform starts, and kept; the headers and the SAS token
 *             are made then (ngx_acs_push.c), and the hub's timeout counts
 *             from then
 *   outcome   the hub's verdict (ngx_acs_hub_verdict): sent, gone (410:
 *             the handle is removed from the registry at a later turn,
 *             ngx_acs_gone.c), rejected, or again: after a backoff or
 *             Retry-After (the job waits in a timer tree, found from its
 *             node), or at the head of its lane when the lane brakes
 *             because its host refused a connection; the lane learns
 *             from each answer (ngx_acs_lane_answer)
 *   ring end  a call push is never sent after its ring end (the event's
 *             time plus acs_notify_call_ttl): it is expired when it would
 *             start, when its retry would come after it, or at the
 *             delivery's deadline, whichever is first (ngx_acs_job_expired)
 *   trace     every final outcome goes to acs_notify_trace, with the last
 *             answer of the hub when there was one (ngx_acs_job_trace)
 *
 * Work is done by the pump, a posted event with a budget per pass (the
 * dispatcher's part first: ngx_acs_dispatch.c); a pass that runs out of
 * budget goes on at the next turn of the event loop, so no turn holds the
 * worker for long whatever the backlog.  Job records, transfer slots and
 * handle records are kept for reuse: their number follows the largest
 * queue, never a delivery's size.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_lane.h"
#include "ngx_acs_gone.h"
#include "ngx_acs_push.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_stats.h"
#include "ngx_acs_trace.h"
#include "ngx_acs_engine.h"


#define NGX_ACS_BACKOFF_BASE     250      /* ms */
#define NGX_ACS_BACKOFF_MAX      5000     /* ms */
#define NGX_ACS_JOB_CHUNK        256      /* records allocated at once */
#define NGX_ACS_PASS_STARTS      32       /* transfers started per pass */
#define NGX_ACS_PASS_WAKES       1024     /* retries due, per pass */


typedef enum {
    NGX_ACS_JOB_QUEUED = 0,    /* in its lane's queue */
    NGX_ACS_JOB_PARKED,        /* behind its handle's cap */
    NGX_ACS_JOB_RUNNING,
    NGX_ACS_JOB_WAITING        /* for its retry, in the timer tree */
} ngx_acs_job_state_e;


typedef struct ngx_acs_slot_s    ngx_acs_slot_t;
typedef struct ngx_acs_handle_s  ngx_acs_handle_t;


/* a device handle with transfers running */

struct ngx_acs_handle_s {
    ngx_rbtree_node_t           node;          /* key: hash of the handle */
    ngx_uint_t                  active;
    ngx_queue_t                 parked;        /* of jobs, PARKED */
    ngx_acs_handle_t           *next;          /* in the free list */
};


/* a transfer running */

struct ngx_acs_slot_s {
    ngx_acs_http_t              http;
    ngx_acs_push_headers_t      headers;       /* kept for the next */
    ngx_acs_job_t              *job;
    ngx_msec_t                  start;
    ngx_acs_slot_t             *next;          /* in the free list */
    ngx_acs_slot_t             *made;          /* every slot, for exit */
};


typedef struct {
    ngx_acs_lane_t             *lanes;
    ngx_uint_t                  nlanes;
    ngx_log_t                  *log;
    ngx_acs_dedup_t            *dedup;
    ngx_acs_engine_work_pt      work;
    ngx_acs_engine_final_pt     final;

    ngx_uint_t                  queued;        /* jobs made, not final */

    ngx_rbtree_t                waiting;       /* of jobs, WAITING */
    ngx_rbtree_node_t           sentinel;
    ngx_event_t                 wait;
    ngx_connection_t            wait_dummy;

    ngx_event_t                 pump;
    ngx_connection_t            pump_dummy;

    ngx_pool_t                 *scratch;       /* rendering */
    ngx_acs_job_t              *free_jobs;
    ngx_acs_slot_t             *free_slots;
    ngx_acs_slot_t             *slots;         /* every slot made */
    ngx_acs_handle_t           *free_handles;
    ngx_array_t                 allocs;        /* of void *, freed at exit */

    ngx_acs_slot_t             *answer;        /* the last transfer ended,
                                                  for the trace */
} ngx_acs_engine_t;


static void *ngx_acs_engine_alloc(size_t size);
static void ngx_acs_engine_wake(ngx_event_t *ev);

static ngx_acs_lane_t *ngx_acs_job_lane(ngx_acs_job_t *job);
static void ngx_acs_job_enqueue(ngx_acs_job_t *job, ngx_uint_t head);
static ngx_int_t ngx_acs_job_start(ngx_acs_job_t *job);
static void ngx_acs_job_done(ngx_acs_http_t *h);
static void ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay,
    const char *why);
static void ngx_acs_job_final(ngx_acs_job_t *job, ngx_acs_final_e final);
static void ngx_acs_job_unlink(ngx_acs_job_t *job);
static ngx_uint_t ngx_acs_job_ring_over(ngx_acs_job_t *job, ngx_msec_t delay);
static ngx_uint_t ngx_acs_job_expired(ngx_acs_job_t *job, ngx_msec_t delay);
static void ngx_acs_job_trace(ngx_acs_job_t *job, ngx_acs_final_e final);

static ngx_acs_handle_t *ngx_acs_handle_get(ngx_acs_lane_t *lane,
    ngx_str_t *handle);
static void ngx_acs_handle_put(ngx_acs_lane_t *lane, ngx_acs_handle_t *h);

static void ngx_acs_pump(ngx_event_t *ev);
static void ngx_acs_wait_arm(void);
static void ngx_acs_wait_handler(ngx_event_t *ev);


static ngx_acs_engine_t  ngx_acs_engine;


/* what the status page and the trace call each final outcome */

static ngx_acs_outcome_e  ngx_acs_final_outcomes[] = {
    [NGX_ACS_FINAL_SENT] = NGX_ACS_OUT_SENT,
    [NGX_ACS_FINAL_GONE] = NGX_ACS_OUT_GONE,
    [NGX_ACS_FINAL_REJECTED] = NGX_ACS_OUT_REJECTED,
    [NGX_ACS_FINAL_FAILED] = NGX_ACS_OUT_FAILED,
    [NGX_ACS_FINAL_DROPPED] = NGX_ACS_OUT_FAILED,
    [NGX_ACS_FINAL_SKIPPED] = NGX_ACS_OUT_MAX,        /* not counted */
    [NGX_ACS_FINAL_EXPIRED] = NGX_ACS_OUT_EXPIRED
};

static ngx_acs_trace_outcome_e  ngx_acs_final_traces[] = {
    [NGX_ACS_FINAL_SENT] = NGX_ACS_TRACE_SENT,
    [NGX_ACS_FINAL_GONE] = NGX_ACS_TRACE_GONE,
    [NGX_ACS_FINAL_REJECTED] = NGX_ACS_TRACE_REJECTED,
    [NGX_ACS_FINAL_FAILED] = NGX_ACS_TRACE_FAILED,
    [NGX_ACS_FINAL_DROPPED] = NGX_ACS_TRACE_DROPPED,
    [NGX_ACS_FINAL_SKIPPED] = NGX_ACS_TRACE_SKIPPED,
    [NGX_ACS_FINAL_EXPIRED] = NGX_ACS_TRACE_EXPIRED
};

/* a row for every final outcome, or this does not compile */
typedef char  ngx_acs_final_outcomes_all[
    (sizeof(ngx_acs_final_outcomes) / sizeof(ngx_acs_outcome_e)
     == NGX_ACS_FINALS
     && sizeof(ngx_acs_final_traces) / sizeof(ngx_acs_trace_outcome_e)
        == NGX_ACS_FINALS) ? 1 : -1];


ngx_int_t
ngx_acs_engine_init(ngx_cycle_t *cycle, ngx_array_t *hubs,
    ngx_acs_registry_t *registry, ngx_acs_dedup_t *dedup,
    ngx_acs_engine_work_pt work, ngx_acs_engine_final_pt final)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    ngx_memzero(e, sizeof(ngx_acs_engine_t));

    e->log = cycle->log;
    e->dedup = dedup;
    e->work = work;
    e->final = final;

    ngx_rbtree_init(&e->waiting, &e->sentinel, ngx_rbtree_insert_timer_value);

    ngx_acs_worker_event(&e->wait, ngx_acs_wait_handler, &e->wait_dummy,
                         e->log);
    ngx_acs_worker_event(&e->pump, ngx_acs_pump, &e->pump_dummy, e->log);

    e->scratch = ngx_create_pool(16384, cycle->log);

    if (e->scratch == NULL
        || ngx_acs_gone_init(cycle, registry) != NGX_OK
        || ngx_array_init(&e->allocs, cycle->pool, 16, sizeof(void *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    e->lanes = ngx_acs_lanes_init(cycle, hubs, ngx_acs_hub_conns_cap(cycle),
                                  ngx_acs_engine_wake, &e->nlanes);

    return e->lanes ? NGX_OK : NGX_ERROR;
}


void
ngx_acs_engine_exit(ngx_cycle_t *cycle)
{
    void              **a;
    ngx_uint_t          i;
    ngx_acs_slot_t     *slot;
    ngx_acs_engine_t   *e = &ngx_acs_engine;

    if (e->log == NULL) {
        return;
    }

    ngx_acs_gone_exit();
    ngx_acs_curl_exit_process(cycle);

    for (slot = e->slots; slot; slot = slot->made) {
        ngx_acs_push_headers_free(&slot->headers);
    }

    a = e->allocs.elts;

    for (i = 0; i < e->allocs.nelts; i++) {
        ngx_free(a[i]);
    }

    if (e->scratch) {
        ngx_destroy_pool(e->scratch);
    }

    e->log = NULL;
}


ngx_uint_t
ngx_acs_engine_queued(void)
{
    return ngx_acs_engine.queued;
}


void
ngx_acs_engine_free(ngx_acs_job_t *job)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    job->u.queue.next = (ngx_queue_t *) e->free_jobs;
    e->free_jobs = job;
}


void
ngx_acs_engine_queue(ngx_acs_job_t *job)
{
    ngx_acs_engine.queued++;
    ngx_acs_stats_queue(1);

    ngx_acs_job_enqueue(job, 0);
}


ngx_uint_t
ngx_acs_engine_drop(ngx_acs_job_t *job, ngx_uint_t log)
{
    ngx_uint_t         rc;
    ngx_acs_lane_t    *lane;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (job->state == NGX_ACS_JOB_RUNNING) {
        return NGX_ACS_DROP_RUNNING;
    }

    lane = ngx_acs_job_lane(job);
    rc = NGX_ACS_DROP_DONE;

    if (log && job->attempt && !ngx_acs_job_ring_over(job, 0)) {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... through "
                      "\"%V\" failed after %ui attempts: %s",
                      &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                      job->dev->handle.data, &job->hub->name,
                      (ngx_uint_t) job->attempt,
                      job->status ? "not final at the deadline"
                                  : (char *) lane->error);
        rc = NGX_ACS_DROP_LOGGED;
    }

    ngx_acs_job_unlink(job);

    if (job->state == NGX_ACS_JOB_PARKED) {
        ngx_acs_handle_put(lane, job->handle);
        job->handle = NULL;
    }

    if (!ngx_acs_job_expired(job, 0)) {
        ngx_acs_job_final(job, NGX_ACS_FINAL_DROPPED);
    }

    return rc;
}


/* memory of the worker's life: job records, slots, handles */

static void *
ngx_acs_engine_alloc(size_t size)
{
    void              *p, **a;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    a = ngx_array_push(&e->allocs);
    if (a == NULL) {
        return NULL;
    }

    p = ngx_alloc(size, e->log);
    if (p == NULL) {
        e->allocs.nelts--;
        return NULL;
    }

    *a = p;

    return p;
}


ngx_acs_job_t *
ngx_acs_engine_job(void)
{
    ngx_uint_t         i;
    ngx_acs_job_t     *job;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (e->free_jobs == NULL) {

        /* never freed: their number follows the queue's peak */

        job = ngx_acs_engine_alloc(NGX_ACS_JOB_CHUNK * sizeof(ngx_acs_job_t));
        if (job == NULL) {
            return NULL;
        }

        for (i = 0; i < NGX_ACS_JOB_CHUNK; i++) {
            job[i].u.queue.next = (ngx_queue_t *) e->free_jobs;
            e->free_jobs = &job[i];
        }

    }

    job = e->free_jobs;
    e->free_jobs = (ngx_acs_job_t *) job->u.queue.next;

    ngx_memzero(job, sizeof(ngx_acs_job_t));

    return job;
}


static ngx_acs_lane_t *
ngx_acs_job_lane(ngx_acs_job_t *job)
{
    return job->hub->lane;
}


static void
ngx_acs_job_enqueue(ngx_acs_job_t *job, ngx_uint_t head)
{
    ngx_queue_t     *q;
    ngx_acs_lane_t  *lane;

    lane = ngx_acs_job_lane(job);
    q = job->call ? &lane->calls : &lane->chat;

    job->state = NGX_ACS_JOB_QUEUED;
    lane->queued++;

    if (head) {
        ngx_queue_insert_head(q, &job->u.queue);

    } else {
        ngx_queue_insert_tail(q, &job->u.queue);
    }
}


void
ngx_acs_engine_post(void)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (!e->pump.posted) {
        ngx_post_event(&e->pump, &ngx_posted_events);
    }
}


/*
 * A pass of the engine: the dispatcher's work (prepare, make), then the
 * starts, each with a budget.  When a budget runs out, the rest waits for
 * the next turn of the event loop (ngx_posted_next_events), after the
 * events and timers due.
 */

static void
ngx_acs_pump(ngx_event_t *ev)
{
    ngx_uint_t         i, starts, more;
    ngx_queue_t       *q;
    ngx_acs_job_t     *job;
    ngx_acs_lane_t    *lane;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    /* the dispatcher's: deliveries prepared and made into jobs */

    more = e->work();

    /* start */

    starts = NGX_ACS_PASS_STARTS;

    for (i = 0; i < e->nlanes; i++) {
        lane = &e->lanes[i];

        while (ngx_acs_lane_room(lane)) {

            if (!ngx_queue_empty(&lane->calls)) {
                q = ngx_queue_head(&lane->calls);

            } else if (!ngx_queue_empty(&lane->chat)) {
                q = ngx_queue_head(&lane->chat);

            } else {
                break;
            }

            if (starts == 0) {
                more = 1;
                break;
            }

            starts--;

            ngx_queue_remove(q);
            lane->queued--;
            job = ngx_queue_data(q, ngx_acs_job_t, u.queue);

            (void) ngx_acs_job_start(job);
        }

        ngx_acs_lane_gauges(lane);
    }

    if (more) {
        ngx_post_event(&e->pump, &ngx_posted_next_events);
    }
}


/*
 * Starts a job taken from its lane's queue: NGX_OK, or NGX_DECLINED when
 * it is parked behind its handle's cap, waits for a retry or is final.
 */

static ngx_int_t
ngx_acs_job_start(ngx_acs_job_t *job)
{
    ngx_str_t          body;
    ngx_acs_hub_t     *hub;
    ngx_acs_http_t    *h;
    ngx_acs_lane_t    *lane;
    ngx_acs_slot_t    *slot;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    hub = job->hub;
    lane = ngx_acs_job_lane(job);

    if (ngx_acs_job_expired(job, 0)) {
        return NGX_DECLINED;
    }

    switch (ngx_acs_push_body(job, e->scratch, e->log, &body)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        ngx_acs_job_final(job, NGX_ACS_FINAL_SKIPPED);
        return NGX_DECLINED;

    default:
        ngx_acs_job_retry(job, 0, "out of memory");
        return NGX_DECLINED;
    }

    job->handle = ngx_acs_handle_get(lane, &job->dev->handle);
    if (job->handle == NULL) {
        ngx_acs_job_retry(job, 0, "out of memory");
        return NGX_DECLINED;
    }

    if (((ngx_acs_handle_t *) job->handle)->active >= ngx_acs_lane_cap(lane))
    {
        /* one slow device does not hold every connection */
        job->state = NGX_ACS_JOB_PARKED;
        ngx_queue_insert_tail(&((ngx_acs_handle_t *) job->handle)->parked,
                              &job->u.queue);

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "acs_notify: push of \"%V\" to %*s... parked",
                       &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                       job->dev->handle.data);
        return NGX_DECLINED;
    }

    slot = e->free_slots;

    if (slot) {
        e->free_slots = slot->next;

    } else {
        slot = ngx_acs_engine_alloc(sizeof(ngx_acs_slot_t));
        if (slot == NULL) {
            ngx_acs_handle_put(lane, (ngx_acs_handle_t *) job->handle);
            job->handle = NULL;
            ngx_acs_job_retry(job, 0, "out of memory");
            return NGX_DECLINED;
        }

        ngx_memzero(&slot->headers, sizeof(ngx_acs_push_headers_t));
        slot->made = e->slots;
        e->slots = slot;
    }

    ngx_memzero(&slot->http, sizeof(ngx_acs_http_t));

    h = &slot->http;

    h->headers = ngx_acs_push_headers(job, &slot->headers, e->log);
    h->url = (const char *) hub->urls[job->dev->target].data;
    h->body = body.data;
    h->body_len = body.len;
    ngx_acs_hub_transport(hub, h);
    h->pipewait = ngx_acs_lane_pipewait(lane);
    h->conns = &lane->conns;

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "acs_notify: lane \"%V\": a transfer starts, %s, %ui "
                   "running, %ui connections open (%ui ever)",
                   &lane->hub->name, h->pipewait ? "waits for a connection"
                                                 : "may open a connection",
                   lane->active, lane->conns.open, lane->conns.opened);
    h->handler = ngx_acs_job_done;
    h->data = slot;

    if (h->headers == NULL || ngx_acs_curl_submit(h, e->log) != NGX_OK) {
        slot->next = e->free_slots;
        e->free_slots = slot;

        ngx_acs_handle_put(lane, (ngx_acs_handle_t *) job->handle);
        job->handle = NULL;
        ngx_acs_job_retry(job, 0, "not started");
        return NGX_DECLINED;
    }

    slot->job = job;
    slot->start = ngx_current_msec;

    job->state = NGX_ACS_JOB_RUNNING;
    job->attempt++;
    ((ngx_acs_handle_t *) job->handle)->active++;
    ngx_acs_lane_started(lane, h);

    ngx_acs_stats_in_flight(1);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "acs_notify: push of \"%V\" to %*s... started, attempt "
                   "%ui", &job->event->log_id,
                   ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                   (ngx_uint_t) job->attempt);

    return NGX_OK;
}


static ngx_acs_handle_t *
ngx_acs_handle_get(ngx_acs_lane_t *lane, ngx_str_t *handle)
{
    ngx_rbtree_key_t    key;
    ngx_rbtree_node_t  *node, *sentinel;
    ngx_acs_handle_t   *h;
    ngx_acs_engine_t   *e = &ngx_acs_engine;

    /* 64 bits of two hashes: a collision only caps two handles as one */

    key = ((ngx_rbtree_key_t) ngx_murmur_hash2(handle->data, handle->len)
           << 32) | ngx_crc32_short(handle->data, handle->len);

    node = lane->handles.root;
    sentinel = lane->handles.sentinel;

    while (node != sentinel) {
        if (key == node->key) {
            return (ngx_acs_handle_t *) node;
        }

        node = (key < node->key) ? node->left : node->right;
    }

    h = e->free_handles;

    if (h) {
        e->free_handles = h->next;

    } else {
        h = ngx_acs_engine_alloc(sizeof(ngx_acs_handle_t));
        if (h == NULL) {
            return NULL;
        }
    }

    ngx_memzero(h, sizeof(ngx_acs_handle_t));
    ngx_queue_init(&h->parked);

    h->node.key = key;
    ngx_rbtree_insert(&lane->handles, &h->node);

    return h;
}


/* a transfer of the handle ended: the next parked job goes first */

static void
ngx_acs_handle_put(ngx_acs_lane_t *lane, ngx_acs_handle_t *h)
{
    ngx_queue_t       *q;
    ngx_acs_job_t     *job;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (!ngx_queue_empty(&h->parked) && h->active < ngx_acs_lane_cap(lane))
    {
        q = ngx_queue_head(&h->parked);
        ngx_queue_remove(q);

        job = ngx_queue_data(q, ngx_acs_job_t, u.queue);
        job->handle = NULL;
        ngx_acs_job_enqueue(job, 1);
    }

    if (h->active == 0 && ngx_queue_empty(&h->parked)) {
        ngx_rbtree_delete(&lane->handles, &h->node);
        h->next = e->free_handles;
        e->free_handles = h;
    }
}


/* a transfer ended (called from ngx_acs_curl.c, outside curl) */

static void
ngx_acs_job_done(ngx_acs_http_t *h)
{
    ngx_acs_slot_t  *slot = h->data;

    long                status;
    ngx_str_t           tracking, detail;
    ngx_msec_t          delay;
    ngx_acs_job_t      *job;
    ngx_acs_lane_t     *lane;
    ngx_acs_engine_t   *e = &ngx_acs_engine;
    ngx_acs_verdict_e   verdict;

    job = slot->job;
    lane = ngx_acs_job_lane(job);
    status = h->status;
    verdict = ngx_acs_hub_verdict(h);
    e->answer = slot;

    ((ngx_acs_handle_t *) job->handle)->active--;
    ngx_acs_handle_put(lane, (ngx_acs_handle_t *) job->handle);
    job->handle = NULL;

    ngx_acs_stats_in_flight(-1);
    ngx_acs_stats_hub_answer(job->hub->index, ngx_acs_hub_answer(h),
                             ngx_current_msec - slot->start);

    if (verdict == NGX_ACS_VERDICT_THROTTLED
        || verdict == NGX_ACS_VERDICT_FAILED
        || verdict == NGX_ACS_VERDICT_UNREACHABLE)
    {
        ngx_acs_hub_why(h, lane->error, CURL_ERROR_SIZE);
    }

    ngx_acs_lane_answer(lane, h, verdict, slot->start);

    ngx_acs_engine_post();

    tracking.data = h->tracking_id;
    tracking.len = h->tracking_id_len;

    job->status = (status >= 200) ? (uint16_t) status : 0;

    /* free again, but intact until the pump starts the next transfer */

    slot->next = e->free_slots;
    e->free_slots = slot;

    delay = (ngx_msec_t) h->retry_after * 1000;

    switch (verdict) {

    case NGX_ACS_VERDICT_SENT:
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "acs_notify: push of \"%V\" to %*s... sent",
                       &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                       job->dev->handle.data);

        ngx_acs_job_final(job, NGX_ACS_FINAL_SENT);
        return;

    case NGX_ACS_VERDICT_GONE:
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: Notification Hubs reports device handle "
                      "%*s... of \"%V\" gone, removed",
                      ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                      &job->event->log_to);

        ngx_acs_gone_add(&job->event->msg.recipient, &job->dev->handle);
        ngx_acs_job_final(job, NGX_ACS_FINAL_GONE);
        return;

    case NGX_ACS_VERDICT_RENEW:
        if (!job->renewed) {
            /* a token the hub no longer takes: sign a new one, once */
            job->renewed = 1;
            ngx_acs_hub_token_reset(job->hub);
            ngx_acs_job_retry(job, 1, NULL);
            return;
        }

        break;

    case NGX_ACS_VERDICT_THROTTLED:
        ngx_acs_job_retry(job, delay, (char *) lane->error);
        return;

    case NGX_ACS_VERDICT_FAILED:
        ngx_acs_job_retry(job, 0, (char *) lane->error);
        return;

    case NGX_ACS_VERDICT_UNREACHABLE:

        /* the host's failure: the lane brakes, the job waits in it */

        if (!job->delivery->expired
            && (ngx_msec_int_t) (job->delivery->deadline - ngx_current_msec)
               > 0)
        {
            ngx_acs_job_enqueue(job, 1);
            return;
        }

        ngx_acs_job_retry(job, 0, (char *) lane->error);
        return;

    case NGX_ACS_VERDICT_DENIED:
    case NGX_ACS_VERDICT_ABSENT:
    case NGX_ACS_VERDICT_REFUSED:
        break;
    }

    /* 400, 401 twice, 403, 404, 413 and others: never better on retry */

    ngx_acs_hub_detail(h, &detail);

    ngx_log_error(NGX_LOG_ERR, e->log, 0,
                  "acs_notify: Notification Hubs \"%V\" rejected the push of "
                  "event \"%V\" to %*s...: %l, TrackingId: %V%s%V%s",
                  &job->hub->name, &job->event->log_id,
                  ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                  status, &tracking, detail.len ? ", " : "", &detail,
                  (verdict == NGX_ACS_VERDICT_RENEW
                   || verdict == NGX_ACS_VERDICT_DENIED)
                  ? " (pushes need a rule with the Send right)" : "");

    ngx_acs_job_final(job, NGX_ACS_FINAL_REJECTED);
}


/* a lane's brake ends: one push is tried */

static void
ngx_acs_engine_wake(ngx_event_t *ev)
{
    ngx_acs_lane_t  *lane;

    lane = (ngx_acs_lane_t *) ((u_char *) ev - offsetof(ngx_acs_lane_t,
                                                         wake));
    ngx_acs_lane_wake(lane);

    ngx_acs_engine_post();
}


/*
 * Again after delay (an exponential backoff with jitter when 0 and there
 * is a reason), if that is before the deadline; the job fails otherwise.
 */

static void
ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay, const char *why)
{
    ngx_uint_t           n;
    ngx_msec_t           backoff;
    ngx_acs_engine_t    *e = &ngx_acs_engine;
    ngx_acs_delivery_t  *d;

    d = job->delivery;

    if (delay == 0 && why != NULL) {
        n = job->attempt ? job->attempt - 1 : 0;
        backoff = NGX_ACS_BACKOFF_BASE << ngx_min(n, 5);
        backoff = ngx_min(backoff, NGX_ACS_BACKOFF_MAX);
        delay = backoff / 2 + (ngx_msec_t) ngx_random() % backoff;
    }

    /* a call whose ring ends before its retry is over */

    if (ngx_acs_job_expired(job, delay)) {
        return;
    }

    /* past the deadline, or so far that it would be: give up now */

    if (d->expired
        || delay >= (ngx_msec_t) NGX_ACS_CURL_RETRY_MAX * 1000
        || (ngx_msec_int_t) (d->deadline - ngx_current_msec - delay) <= 0)
    {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... through "
                      "\"%V\" failed after %ui attempts: %s",
                      &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                      job->dev->handle.data, &job->hub->name,
                      (ngx_uint_t) job->attempt, why ? why : "401");
        ngx_acs_job_final(job, NGX_ACS_FINAL_FAILED);
        return;
    }

    ngx_acs_stats_retry();

    if (why) {
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... will be "
                      "retried in %Mms: %s", &job->event->log_id,
                      ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                      delay, why);
    }

    job->state = NGX_ACS_JOB_WAITING;
    job->u.timer.key = ngx_current_msec + delay;
    ngx_rbtree_insert(&e->waiting, &job->u.timer);

    ngx_acs_wait_arm();
}


/* the engine's timer at the first retry due */

static void
ngx_acs_wait_arm(void)
{
    ngx_msec_int_t      timer;
    ngx_rbtree_node_t  *node;
    ngx_acs_engine_t   *e = &ngx_acs_engine;

    if (e->waiting.root == e->waiting.sentinel) {
        if (e->wait.timer_set) {
            ngx_del_timer(&e->wait);
        }

        return;
    }

    node = ngx_rbtree_min(e->waiting.root, e->waiting.sentinel);
    timer = (ngx_msec_int_t) (node->key - ngx_current_msec);

    if (timer < 0) {
        timer = 0;
    }

    /* delete, then add: a lazy re-add would keep a later expiry */

    if (e->wait.timer_set) {
        if (e->wait.timer.key == ngx_current_msec + (ngx_msec_t) timer) {
            return;
        }

        ngx_del_timer(&e->wait);
    }

    ngx_add_timer(&e->wait, (ngx_msec_t) timer);
}


static void
ngx_acs_wait_handler(ngx_event_t *ev)
{
    ngx_uint_t          n;
    ngx_acs_job_t      *job;
    ngx_rbtree_node_t  *node;
    ngx_acs_engine_t   *e = &ngx_acs_engine;

    for (n = 0; n < NGX_ACS_PASS_WAKES; n++) {

        if (e->waiting.root == e->waiting.sentinel) {
            break;
        }

        node = ngx_rbtree_min(e->waiting.root, e->waiting.sentinel);

        if ((ngx_msec_int_t) (node->key - ngx_current_msec) > 0) {
            break;
        }

        ngx_rbtree_delete(&e->waiting, node);

        job = (ngx_acs_job_t *) ((u_char *) node
                                 - offsetof(ngx_acs_job_t, u.timer));

        /* older than what is queued: it goes first */
        ngx_acs_job_enqueue(job, 1);
    }

    ngx_acs_wait_arm();
    ngx_acs_engine_post();
}


/* the job is out of whatever queue or tree holds it */

static void
ngx_acs_job_unlink(ngx_acs_job_t *job)
{
    switch (job->state) {

    case NGX_ACS_JOB_QUEUED:
        ngx_acs_job_lane(job)->queued--;
        ngx_queue_remove(&job->u.queue);
        break;

    case NGX_ACS_JOB_PARKED:
        ngx_queue_remove(&job->u.queue);
        break;

    case NGX_ACS_JOB_WAITING:
        ngx_rbtree_delete(&ngx_acs_engine.waiting, &job->u.timer);
        break;

    default: /* NGX_ACS_JOB_RUNNING */
        break;
    }
}


static void
ngx_acs_job_final(ngx_acs_job_t *job, ngx_acs_final_e final)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "acs_notify: push of \"%V\" to %*s... final: %ui",
                   &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                   job->dev->handle.data, (ngx_uint_t) final);

    if (final != NGX_ACS_FINAL_SKIPPED) {
        ngx_acs_stats_push(job->dev->platform,
                           ngx_acs_final_outcomes[final]);
    }

    if (final == NGX_ACS_FINAL_SENT) {
        ngx_acs_stats_delivery_time(ngx_current_msec
                                    - job->delivery->received);
    }

    ngx_acs_job_trace(job, final);

    if (e->dedup) {
        if (final == NGX_ACS_FINAL_SENT) {
            ngx_acs_dedup_confirm(e->dedup, job->key, job->delivery->owner);

        } else {
            ngx_acs_dedup_release(e->dedup, job->key, job->delivery->owner);
        }
    }

    e->queued--;
    ngx_acs_stats_queue(-1);

    /* the delivery may be gone after this */
    e->final(job, final);

    ngx_acs_engine_free(job);

    /* room for more */
    ngx_acs_engine_post();
}


/*
 * A call push whose ring time ends within delay: the event's time plus
 * acs_notify_call_ttl (ngx_acs_event_push_t.expires, 0 for other pushes).
 */

static ngx_uint_t
ngx_acs_job_ring_over(ngx_acs_job_t *job, ngx_msec_t delay)
{
    ngx_msec_t  expires;

    expires = job->event->expires;

    return (expires
            && (ngx_msec_int_t) (expires - ngx_current_msec - delay) <= 0);
}


/*
 * Such a push is final, "expired", never sent late: 1.  Not a failure
 * (Event Grid gets no 503 for it: a redelivery would be a stale call).
 */

static ngx_uint_t
ngx_acs_job_expired(ngx_acs_job_t *job, ngx_msec_t delay)
{
    ngx_msec_int_t     left;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (!ngx_acs_job_ring_over(job, delay)) {
        return 0;
    }

    left = (ngx_msec_int_t) (job->event->expires - ngx_current_msec);

    if (left > 0) {
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: call push of event \"%V\" to %*s... "
                      "expired after %ui attempts: its ring time ends in "
                      "%Mms, before its retry in %Mms; not sent",
                      &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                      job->dev->handle.data, (ngx_uint_t) job->attempt,
                      (ngx_msec_t) left, delay);

    } else {
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: call push of event \"%V\" to %*s... "
                      "expired after %ui attempts: its ring time ended "
                      "%Mms ago; not sent",
                      &job->event->log_id, ngx_min(job->dev->handle.len, 8),
                      job->dev->handle.data, (ngx_uint_t) job->attempt,
                      (ngx_msec_t) -left);
    }

    ngx_acs_job_final(job, NGX_ACS_FINAL_EXPIRED);

    return 1;
}


/*
 * The final outcome into the trace, with the hub's answer that made it
 * final when there is one: the transfer just ended (ngx_acs_job_done) was
 * this job's while it still runs.
 */

static void
ngx_acs_job_trace(ngx_acs_job_t *job, ngx_acs_final_e final)
{
    ngx_acs_slot_t        *a;
    ngx_acs_engine_t      *e = &ngx_acs_engine;
    ngx_acs_trace_push_t   tp;

    a = e->answer;
    e->answer = NULL;

    if (!ngx_acs_trace_on()) {
        return;
    }

    if (a && (a->job != job || job->state != NGX_ACS_JOB_RUNNING)) {
        a = NULL;
    }

    ngx_memzero(&tp, sizeof(ngx_acs_trace_push_t));

    tp.event_id = job->event->msg.id;
    tp.type = job->event->msg.type;
    tp.user = job->event->msg.recipient;
    tp.device = job->dev->device_id;
    tp.handle = job->dev->handle;
    tp.target = job->dev->target;
    tp.platform = job->dev->platform;
    tp.hub = job->hub->name;
    tp.outcome = ngx_acs_final_traces[final];
    tp.status = job->status;
    tp.attempts = job->attempt;
    tp.age = (job->event->age == NGX_ACS_AGE_UNKNOWN) ? NGX_ACS_TRACE_NONE
                                                      : job->event->age;

    if (a) {
        tp.queued = a->start - job->delivery->received;
        tp.hub_time = ngx_current_msec - a->start;
        tp.tracking_id.data = a->http.tracking_id;
        tp.tracking_id.len = a->http.tracking_id_len;
        tp.correlation_id.data = a->http.correlation_id;
        tp.correlation_id.len = a->http.correlation_id_len;
        tp.notification_id.data = a->http.notification_id;
        tp.notification_id.len = a->http.notification_id_len;

    } else {
        tp.queued = ngx_current_msec - job->delivery->received;
    }

    ngx_acs_trace_add(&tp);
}
