
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The dispatch engine of a worker.  A delivery is a batch; its pushes
 * become jobs, one per (event, device); jobs wait in the module's own
 * queues and at most a bounded number of them are transfers in libcurl's
 * multi handle at once, so that every libcurl call costs the same at any
 * depth (docs/dispatch.md, "How pushes flow").
 *
 *   prepare   each event is routed, its recipient looked up (once per
 *             recipient and delivery) and its message made (once per
 *             event, ngx_acs_route.c); the pushes are counted
 *   admit     the delivery is taken when its pushes fit in acs_notify_queue
 *             beside those queued (room is reserved for them), or, when it
 *             is larger than the whole queue, as the one oversize delivery
 *             whose pushes stream in as room frees; else 503 at once
 *   make      a job per device: a small record (delivery, event, device),
 *             de-duplicated by a claim in the shared zone
 *   start     per lane (the hubs of one host), calls first, at most
 *             "slots" transfers (max_connections, times the streams of a
 *             connection for HTTP/2), at most "cap" per device handle; the
 *             payload is rendered once per event and platform, the headers
 *             and the SAS token when the job starts
 *   outcome   sent, gone (410, the handle removed in one registry write
 *             per pass), rejected, or again: after a backoff or Retry-After
 *             (the job waits in a timer tree), or at once when the lane
 *             pauses because its host refused a connection
 *
 * Work is done by the pump, a posted event with a budget per pass: a pass
 * that runs out of budget goes on at the next turn of the event loop, so
 * no turn holds the worker for long whatever the backlog.
 *
 * In "dispatched" mode Event Grid gets 200 when every push is sent, gone
 * or rejected, 503 with Retry-After when one failed, was in flight in
 * another delivery, or is not final at the deadline: then jobs not
 * started are dropped and not started afterwards; jobs running finish in
 * the background.  Event Grid delivers again and de-duplication skips the
 * devices already reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_notify.h"
#include "ngx_acs_event.h"
#include "ngx_acs_route.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_render.h"
#include "ngx_acs_template.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_dedup.h"
#include "ngx_acs_dispatch.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_BACKOFF_BASE     250      /* ms */
#define NGX_ACS_BACKOFF_MAX      5000     /* ms */
#define NGX_ACS_RETRY_AFTER_503  "10"
#define NGX_ACS_H2_STREAMS       32       /* transfers per HTTP/2 conn */
#define NGX_ACS_HANDLE_SHARE     4        /* a handle takes 1/4 of slots */
#define NGX_ACS_JOB_CHUNK        256      /* records allocated at once */
#define NGX_ACS_CALL_RESERVE     16       /* extra room for call pushes,
                                             at least */
#define NGX_ACS_PASS_EVENTS      256      /* events prepared per pass */
#define NGX_ACS_PASS_JOBS        1024     /* jobs made per pass */
#define NGX_ACS_PASS_STARTS      32       /* transfers started per pass */
#define NGX_ACS_PASS_WAKES       1024     /* retries due, per pass */
#define NGX_ACS_DROP_LOG         8        /* dropped jobs logged alone */


typedef enum {
    NGX_ACS_BATCH_PREPARING = 0,
    NGX_ACS_BATCH_MAKING,
    NGX_ACS_BATCH_MADE,
    NGX_ACS_BATCH_EXPIRED
} ngx_acs_batch_state_e;


typedef enum {
    NGX_ACS_JOB_QUEUED = 0,    /* in its lane's queue */
    NGX_ACS_JOB_PARKED,        /* behind its handle's cap */
    NGX_ACS_JOB_RUNNING,
    NGX_ACS_JOB_WAITING        /* for its retry, in the timer tree */
} ngx_acs_job_state_e;


typedef enum {
    NGX_ACS_FINAL_SENT = 0,
    NGX_ACS_FINAL_GONE,
    NGX_ACS_FINAL_REJECTED,
    NGX_ACS_FINAL_FAILED,
    NGX_ACS_FINAL_DROPPED,     /* not started by the deadline */
    NGX_ACS_FINAL_SKIPPED      /* no payload fits the device */
} ngx_acs_final_e;


typedef struct ngx_acs_batch_s   ngx_acs_batch_t;
typedef struct ngx_acs_job_s     ngx_acs_job_t;
typedef struct ngx_acs_slot_s    ngx_acs_slot_t;
typedef struct ngx_acs_handle_s  ngx_acs_handle_t;


/* the transfers to one host: the hubs that share its connections */

typedef struct {
    ngx_str_t                   host;          /* and connect_to */
    ngx_uint_t                  http2;
    ngx_acs_hub_t              *hub;           /* the first, for logs */

    ngx_queue_t                 calls;         /* of jobs, QUEUED */
    ngx_queue_t                 chat;
    ngx_uint_t                  active;        /* transfers running */
    ngx_uint_t                  slots;
    ngx_uint_t                  cap;           /* per device handle */

    ngx_uint_t                  failures;      /* connects failed in a row */
    ngx_uint_t                  paused;        /* unsigned:1 */
    ngx_event_t                 wake;
    ngx_connection_t            dummy;         /* timer's data, see curl */

    ngx_rbtree_t                handles;       /* of ngx_acs_handle_t */
    ngx_rbtree_node_t           sentinel;

    u_char                      error[CURL_ERROR_SIZE];
} ngx_acs_lane_t;


/* a device handle with transfers running */

struct ngx_acs_handle_s {
    ngx_rbtree_node_t           node;          /* key: hash of the handle */
    ngx_uint_t                  active;
    ngx_queue_t                 parked;        /* of jobs, PARKED */
    ngx_acs_handle_t           *next;          /* in the free list */
};


/* a recipient of a delivery and its devices, looked up once */

typedef struct {
    ngx_rbtree_node_t           node;          /* key: hash of the raw id */
    ngx_str_t                   raw_id;
    ngx_acs_device_t           *devs;
    ngx_uint_t                  ndevs;
    ngx_uint_t                  has_voip;      /* unsigned:1 */
} ngx_acs_recipient_t;


/* an event of a delivery, and what its pushes share */

typedef struct {
    ngx_acs_msg_t               msg;
    ngx_acs_recipient_t        *to;            /* NULL: no push */
    ngx_uint_t                  next;          /* the next device to make */
    ngx_str_t                   body[NGX_ACS_PLATFORMS];
    u_char                      state[NGX_ACS_PLATFORMS];  /* see body() */
} ngx_acs_item_t;


struct ngx_acs_batch_s {
    ngx_pool_t                 *pool;
    ngx_http_request_t         *request;       /* NULL once answered */
    ngx_pool_cleanup_t         *cleanup;       /* in the request's pool */
    ngx_array_t                *events;        /* the request's */
    ngx_http_acs_notify_loc_conf_t  *conf;

    ngx_acs_batch_state_e       state;
    ngx_queue_t                 link;          /* preparing or making */
    ngx_queue_t                 jobs;          /* made, not final */

    ngx_acs_item_t             *items;
    ngx_uint_t                  nitems;        /* prepared */
    ngx_uint_t                  next_item;     /* the next to make jobs of */
    ngx_rbtree_t                recipients;
    ngx_rbtree_node_t           sentinel;

    ngx_uint_t                  pushes;        /* counted when prepared */
    ngx_uint_t                  calls;         /* of them, call pushes */
    ngx_uint_t                  made;          /* devices taken */
    ngx_uint_t                  reserved;      /* room held in the queue */
    ngx_uint_t                  pending;       /* jobs not final */
    ngx_uint_t                  sent;
    ngx_uint_t                  failed;
    ngx_uint_t                  busy;          /* in flight elsewhere */
    ngx_uint_t                  dropped;

    ngx_int_t                  *sync;          /* the answer, when given
                                                  inside ngx_acs_dispatch */
    uint64_t                    owner;         /* of its dedup claims */
    ngx_msec_t                  deadline;
    ngx_msec_t                  received;
    ngx_event_t                 timer;
    ngx_connection_t            dummy;
};


struct ngx_acs_job_s {
    union {
        ngx_queue_t             queue;         /* QUEUED, PARKED */
        ngx_rbtree_node_t       timer;         /* WAITING: when */
    } u;
    ngx_queue_t                 sibling;       /* in its batch's jobs */
    ngx_acs_batch_t            *batch;
    ngx_acs_item_t             *item;
    ngx_acs_device_t           *dev;
    ngx_acs_hub_t              *hub;
    ngx_acs_handle_t           *handle;        /* RUNNING, PARKED */
    u_char                      key[NGX_ACS_DEDUP_KEY_LEN];
    uint16_t                    attempt;
    uint16_t                    status;        /* of the last answer */
    u_char                      state;
    u_char                      renewed;       /* the SAS token, once */
    u_char                      call;          /* goes first */
};


/* a transfer running */

struct ngx_acs_slot_s {
    ngx_acs_http_t              http;
    ngx_acs_job_t              *job;
    ngx_msec_t                  start;
    ngx_acs_slot_t             *next;          /* in the free list */
};


typedef struct {
    ngx_acs_lane_t             *lanes;
    ngx_uint_t                  nlanes;
    ngx_log_t                  *log;
    ngx_acs_registry_t         *registry;
    ngx_acs_dedup_t            *dedup;

    ngx_uint_t                  queue_size;    /* acs_notify_queue */
    ngx_uint_t                  queued;        /* jobs made, not final */
    ngx_uint_t                  reserved;      /* held by admitted batches */
    ngx_acs_batch_t            *oversize;      /* larger than the queue */
    ngx_queue_t                 preparing;     /* of batches */
    ngx_queue_t                 making;
    ngx_uint_t                  serial;

    ngx_rbtree_t                waiting;       /* of jobs, WAITING */
    ngx_rbtree_node_t           sentinel;
    ngx_event_t                 wait;
    ngx_connection_t            wait_dummy;

    ngx_event_t                 pump;
    ngx_connection_t            pump_dummy;
    ngx_uint_t                  posted;        /* unsigned:1 */

    ngx_array_t                *gone;          /* of ngx_acs_gone_t */
    ngx_pool_t                 *gone_pool;
    ngx_event_t                 flush;
    ngx_connection_t            flush_dummy;

    ngx_pool_t                 *scratch;       /* rendering */
    ngx_acs_job_t              *free_jobs;
    ngx_acs_slot_t             *free_slots;
    ngx_acs_handle_t           *free_handles;
    ngx_array_t                 allocs;        /* of void *, freed at exit */
    ngx_uint_t                  sockets;       /* counted in the stats */
    ngx_uint_t                  records;       /* job records allocated */
} ngx_acs_engine_t;


static ngx_int_t ngx_acs_lanes_init(ngx_cycle_t *cycle,
    ngx_http_acs_notify_main_conf_t *amcf);
static void ngx_acs_engine_event(ngx_event_t *ev, ngx_event_handler_pt h,
    ngx_connection_t *dummy);
static void *ngx_acs_engine_alloc(size_t size);

static ngx_acs_batch_t *ngx_acs_batch_create(ngx_http_request_t *r,
    ngx_array_t *events);
static ngx_int_t ngx_acs_batch_prepare(ngx_acs_batch_t *batch,
    ngx_uint_t *budget);
static ngx_int_t ngx_acs_batch_item(ngx_acs_batch_t *batch,
    ngx_acs_event_t *ev, ngx_acs_item_t *item);
static ngx_acs_recipient_t *ngx_acs_batch_recipient(ngx_acs_batch_t *batch,
    ngx_str_t *raw_id);
static ngx_uint_t ngx_acs_item_wants(ngx_acs_batch_t *batch,
    ngx_acs_item_t *item, ngx_acs_device_t *dev, ngx_uint_t log);
static void ngx_acs_batch_admit(ngx_acs_batch_t *batch);
static void ngx_acs_batch_make(ngx_acs_batch_t *batch, ngx_uint_t *budget);
static void ngx_acs_batch_deadline(ngx_event_t *ev);
static void ngx_acs_batch_expire(ngx_acs_batch_t *batch);
static void ngx_acs_batch_check(ngx_acs_batch_t *batch);
static void ngx_acs_batch_answer(ngx_acs_batch_t *batch, ngx_uint_t status,
    const char *result);
static void ngx_acs_batch_detach(void *data);
static void ngx_acs_batch_release(ngx_acs_batch_t *batch);

static ngx_acs_job_t *ngx_acs_job_alloc(void);
static void ngx_acs_job_enqueue(ngx_acs_job_t *job, ngx_uint_t head);
static ngx_int_t ngx_acs_job_start(ngx_acs_job_t *job);
static ngx_int_t ngx_acs_job_body(ngx_acs_job_t *job, ngx_str_t *body);
static struct curl_slist *ngx_acs_job_headers(ngx_acs_job_t *job);
static void ngx_acs_job_done(ngx_acs_http_t *h);
static void ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay,
    const char *why);
static void ngx_acs_job_final(ngx_acs_job_t *job, ngx_acs_final_e final);
static void ngx_acs_job_unlink(ngx_acs_job_t *job);

static ngx_acs_handle_t *ngx_acs_handle_get(ngx_acs_lane_t *lane,
    ngx_str_t *handle);
static void ngx_acs_handle_put(ngx_acs_lane_t *lane, ngx_acs_handle_t *h);
static ngx_acs_lane_t *ngx_acs_job_lane(ngx_acs_job_t *job);
static ngx_uint_t ngx_acs_lane_failure(CURLcode rc, ngx_acs_http_t *h);
static void ngx_acs_lane_pause(ngx_acs_lane_t *lane, ngx_acs_http_t *h);
static void ngx_acs_lane_wake(ngx_event_t *ev);

static void ngx_acs_pump_post(void);
static void ngx_acs_pump(ngx_event_t *ev);
static void ngx_acs_wait_arm(void);
static void ngx_acs_wait_handler(ngx_event_t *ev);
static void ngx_acs_gone_add(ngx_acs_job_t *job);
static void ngx_acs_gone_flush(ngx_event_t *ev);

static ngx_int_t ngx_acs_dispatch_answer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t pushes);


static ngx_acs_engine_t  ngx_acs_engine;


ngx_int_t
ngx_acs_dispatch_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i, per_host, total;
    ngx_acs_hub_t                    *hub;
    ngx_acs_engine_t                 *e = &ngx_acs_engine;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_acs_notify_module);

    ngx_memzero(e, sizeof(ngx_acs_engine_t));

    e->log = cycle->log;
    e->registry = amcf->registry;
    e->dedup = amcf->dedup;
    e->queue_size = amcf->queue_size;

    ngx_queue_init(&e->preparing);
    ngx_queue_init(&e->making);
    ngx_rbtree_init(&e->waiting, &e->sentinel, ngx_rbtree_insert_timer_value);

    ngx_acs_engine_event(&e->wait, ngx_acs_wait_handler, &e->wait_dummy);
    ngx_acs_engine_event(&e->pump, ngx_acs_pump, &e->pump_dummy);
    ngx_acs_engine_event(&e->flush, ngx_acs_gone_flush, &e->flush_dummy);

    e->scratch = ngx_create_pool(16384, cycle->log);
    e->gone_pool = ngx_create_pool(4096, cycle->log);

    if (e->scratch == NULL || e->gone_pool == NULL
        || ngx_array_init(&e->allocs, cycle->pool, 16, sizeof(void *))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_acs_lanes_init(cycle, amcf) != NGX_OK) {
        return NGX_ERROR;
    }

    hub = amcf->hubs.elts;
    per_host = 0;
    total = 0;

    for (i = 0; i < amcf->hubs.nelts; i++) {
        per_host = ngx_max(per_host, hub[i].max_connections);
        total += hub[i].max_connections;
    }

    return ngx_acs_curl_init_process(cycle, per_host, total);
}


void
ngx_acs_dispatch_exit_process(ngx_cycle_t *cycle)
{
    void              **a;
    ngx_uint_t          i;
    ngx_acs_engine_t   *e = &ngx_acs_engine;

    if (e->log == NULL) {
        return;
    }

    if (e->gone && e->gone->nelts) {
        ngx_acs_gone_flush(&e->flush);
    }

    ngx_acs_curl_exit_process(cycle);
    ngx_acs_stats_connections(- (ngx_int_t) e->sockets);

    a = e->allocs.elts;

    for (i = 0; i < e->allocs.nelts; i++) {
        ngx_free(a[i]);
    }

    if (e->scratch) {
        ngx_destroy_pool(e->scratch);
    }

    if (e->gone_pool) {
        ngx_destroy_pool(e->gone_pool);
    }
}


/*
 * One lane per host (with its connect_to and HTTP version): hubs on one
 * namespace share its connections, so they share the slots.
 */

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


static ngx_int_t
ngx_acs_lanes_init(ngx_cycle_t *cycle, ngx_http_acs_notify_main_conf_t *amcf)
{
    u_char            *p;
    ngx_str_t          key;
    ngx_uint_t         i, j;
    ngx_acs_hub_t     *hub;
    ngx_acs_lane_t    *lane;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    hub = amcf->hubs.elts;

    e->lanes = ngx_pcalloc(cycle->pool,
                           amcf->hubs.nelts * sizeof(ngx_acs_lane_t));
    if (e->lanes == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < amcf->hubs.nelts; i++) {

        key.len = hub[i].host.len + 1 + hub[i].connect_to.len;
        key.data = ngx_pnalloc(cycle->pool, key.len);
        if (key.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(key.data, hub[i].host.data, hub[i].host.len);
        *p++ = ' ';
        ngx_memcpy(p, hub[i].connect_to.data, hub[i].connect_to.len);

        for (j = 0; j < e->nlanes; j++) {
            lane = &e->lanes[j];

            if (lane->http2 == (ngx_uint_t) hub[i].http2
                && lane->host.len == key.len
                && ngx_strncmp(lane->host.data, key.data, key.len) == 0)
            {
                break;
            }
        }

        if (j == e->nlanes) {
            lane = &e->lanes[e->nlanes++];

            lane->host = key;
            lane->http2 = hub[i].http2;
            lane->hub = &hub[i];

            ngx_queue_init(&lane->calls);
            ngx_queue_init(&lane->chat);
            ngx_rbtree_init(&lane->handles, &lane->sentinel,
                            ngx_rbtree_insert_value);
            ngx_acs_engine_event(&lane->wake, ngx_acs_lane_wake,
                                 &lane->dummy);
        }

        hub[i].lane = lane;

        /*
         * HTTP/1.1: a transfer per connection; HTTP/2: streams share them.
         * Hubs of one host share its connections: the largest number.
         */

        lane->slots = ngx_max(lane->slots, hub[i].max_connections
                                           * (lane->http2
                                              ? NGX_ACS_H2_STREAMS : 1));
        lane->cap = ngx_max(lane->slots / NGX_ACS_HANDLE_SHARE, 1);
    }

    for (j = 0; j < e->nlanes; j++) {
        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                       "acs_notify: lane \"%V\" (%s): %ui slots, %ui per "
                       "device handle", &e->lanes[j].host,
                       e->lanes[j].http2 ? "HTTP/2" : "HTTP/1.1",
                       e->lanes[j].slots, e->lanes[j].cap);
    }

    return NGX_OK;
}


/*
 * The events of the engine: their data is a dummy connection, as nginx's
 * debug logging of timers reads the fd of ev->data; they are not
 * cancelable, so that a graceful shutdown waits for the pushes.
 */

static void
ngx_acs_engine_event(ngx_event_t *ev, ngx_event_handler_pt h,
    ngx_connection_t *dummy)
{
    dummy->fd = (ngx_socket_t) -1;
    ev->data = dummy;
    ev->handler = h;
    ev->log = ngx_acs_engine.log;
}


ngx_int_t
ngx_acs_dispatch(ngx_http_request_t *r, ngx_array_t *events)
{
    ngx_int_t                   rc;
    ngx_uint_t                  budget;
    ngx_acs_batch_t            *batch;
    ngx_pool_cleanup_t         *cln;
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ngx_exiting) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "acs_notify: worker shutting down, delivery refused "
                      "with 503");
        ngx_str_set(&ctx->result, "unavailable:shutdown");
        return ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE, 0);
    }

    if (ngx_acs_engine.log == NULL) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "acs_notify: no dispatch engine in this process");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    batch = ngx_acs_batch_create(r, events);
    if (batch == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_destroy_pool(batch->pool);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_acs_batch_detach;
    cln->data = batch;

    batch->request = r;
    batch->cleanup = cln;

    ngx_add_timer(&batch->timer, batch->conf->dispatch_timeout);

    /*
     * A small delivery (a call, typically) is prepared at once, whatever
     * is being prepared, and may be answered at once (nothing to push,
     * queue full, accepted): the answer is then returned and the batch may
     * be gone.  A large one is prepared by the pump, a part per pass.
     */

    ngx_queue_insert_tail(&ngx_acs_engine.preparing, &batch->link);

    if (events->nelts > NGX_ACS_PASS_EVENTS) {
        ngx_acs_pump_post();
        return NGX_DONE;
    }

    rc = NGX_DONE;
    batch->sync = &rc;
    budget = NGX_ACS_PASS_EVENTS;

    (void) ngx_acs_batch_prepare(batch, &budget);

    ngx_queue_remove(&batch->link);
    ngx_acs_batch_admit(batch);

    if (rc != NGX_DONE) {
        return rc;
    }

    batch->sync = NULL;

    return NGX_DONE;
}


static ngx_acs_batch_t *
ngx_acs_batch_create(ngx_http_request_t *r, ngx_array_t *events)
{
    ngx_pool_t       *pool;
    ngx_acs_batch_t  *batch;

    pool = ngx_create_pool(4096, ngx_acs_engine.log);
    if (pool == NULL) {
        return NULL;
    }

    batch = ngx_pcalloc(pool, sizeof(ngx_acs_batch_t));
    if (batch == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    batch->items = ngx_pcalloc(pool, events->nelts * sizeof(ngx_acs_item_t));
    if (batch->items == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    batch->pool = pool;
    batch->events = events;
    batch->conf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);
    batch->state = NGX_ACS_BATCH_PREPARING;
    batch->deadline = ngx_current_msec + batch->conf->dispatch_timeout;
    batch->received = r->start_msec;
    batch->owner = ((uint64_t) ngx_pid << 32)
                   | (uint32_t) ++ngx_acs_engine.serial;

    ngx_queue_init(&batch->jobs);
    ngx_rbtree_init(&batch->recipients, &batch->sentinel,
                    ngx_rbtree_insert_value);

    ngx_acs_engine_event(&batch->timer, ngx_acs_batch_deadline,
                         &batch->dummy);

    return batch;
}


/*
 * Prepares events while the budget lasts: NGX_OK when all are, NGX_AGAIN
 * when some are left.  A batch that cannot be prepared is answered.
 */

static ngx_int_t
ngx_acs_batch_prepare(ngx_acs_batch_t *batch, ngx_uint_t *budget)
{
    ngx_int_t          rc;
    ngx_acs_event_t   *ev;

    ev = batch->events->elts;

    while (batch->nitems < batch->events->nelts) {

        if (*budget == 0) {
            return NGX_AGAIN;
        }

        (*budget)--;

        rc = ngx_acs_batch_item(batch, &ev[batch->nitems],
                                &batch->items[batch->nitems]);

        if (rc == NGX_DECLINED) {
            /* the registry failed (logged at crit): Event Grid retries */
            ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "unavailable:registry");
            batch->state = NGX_ACS_BATCH_EXPIRED;
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_acs_batch_answer(batch, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 NULL);
            batch->state = NGX_ACS_BATCH_EXPIRED;
            return NGX_ERROR;
        }

        batch->nitems++;
    }

    /* the events are the request's: not used afterwards */
    batch->events = NULL;

    return NGX_OK;
}


/* an event: route, recipient, message; its pushes counted */

static ngx_int_t
ngx_acs_batch_item(ngx_acs_batch_t *batch, ngx_acs_event_t *ev,
    ngx_acs_item_t *item)
{
    ngx_int_t                   rc;
    ngx_log_t                  *log;
    ngx_uint_t                  i, n, calls;
    ngx_acs_route_t             route;
    ngx_acs_recipient_t        *to;
    ngx_http_acs_notify_ctx_t  *ctx;

    log = batch->request->connection->log;
    ctx = ngx_http_get_module_ctx(batch->request, ngx_http_acs_notify_module);

    rc = ngx_acs_route(batch->pool, ev, &route);

    if (rc == NGX_DECLINED) {
        ctx->ignored++;
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify: event \"%V\" of type \"%V\" ignored",
                       &ev->id, &ev->type);
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        ctx->ignored++;
        ngx_log_error(batch->conf->log_level, log, 0,
                      "acs_notify: event \"%V\" of type \"%V\" has no "
                      "recipient, no push", &ev->id, &ev->type);
        return NGX_OK;
    }

    to = ngx_acs_batch_recipient(batch, &route.recipient);
    if (to == NULL) {
        return NGX_DECLINED;
    }

    item->msg.intent = route.intent;
    item->msg.id = ev->id;
    item->to = to;

    n = 0;

    for (i = 0; i < to->ndevs; i++) {
        n += ngx_acs_item_wants(batch, item, &to->devs[i], 1);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: event \"%V\" for \"%V\": %ui devices, %ui "
                   "pushes", &ev->id, &route.recipient, to->ndevs, n);

    if (n == 0) {
        item->to = NULL;
        return NGX_OK;
    }

    if (ngx_acs_message(batch->pool, ev, &route, batch->conf->render.preview,
                        ngx_acs_template_find(batch->conf->render.templates,
                                              route.rule, NULL)
                        != NULL,
                        &item->msg)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    calls = (route.intent == NGX_ACS_INTENT_INCOMING_CALL) ? n : 0;

    batch->pushes += n;
    batch->calls += calls;

    return NGX_OK;
}


/*
 * Whether the device gets a push of the event: VoIP devices get calls
 * only (iOS allows nothing else), an apns device of a user who has a VoIP
 * device gets no call (it rings there, not twice), a web push needs its
 * keys (Notification Hubs refuses it without; logged once, when counted).
 */

static ngx_uint_t
ngx_acs_item_wants(ngx_acs_batch_t *batch, ngx_acs_item_t *item,
    ngx_acs_device_t *dev, ngx_uint_t log)
{
    ngx_uint_t           call;
    ngx_acs_platform_t  *p;

    p = ngx_acs_platform(dev->platform);
    call = (item->msg.intent == NGX_ACS_INTENT_INCOMING_CALL);

    if ((p->calls_only && !call) || (call && p->rings_voip
                                     && item->to->has_voip))
    {
        return 0;
    }

    if (p->keys && (dev->auth.len == 0 || dev->p256dh.len == 0)) {

        if (log) {
            ngx_log_error(NGX_LOG_WARN, batch->request->connection->log, 0,
                          "acs_notify: no push of event \"%V\" for device "
                          "\"%V\" (%V): the registration lacks its keys",
                          &item->msg.id, &dev->device_id, &p->name);
        }

        return 0;
    }

    return 1;
}


/* the devices of a recipient, looked up once per delivery */

static ngx_acs_recipient_t *
ngx_acs_batch_recipient(ngx_acs_batch_t *batch, ngx_str_t *raw_id)
{
    uint32_t              hash;
    ngx_uint_t            i;
    ngx_array_t           devices;
    ngx_rbtree_node_t    *node, *sentinel;
    ngx_acs_recipient_t  *to;

    hash = ngx_murmur_hash2(raw_id->data, raw_id->len);

    node = batch->recipients.root;
    sentinel = batch->recipients.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        to = (ngx_acs_recipient_t *) node;

        if (to->raw_id.len == raw_id->len
            && ngx_strncmp(to->raw_id.data, raw_id->data, raw_id->len) == 0)
        {
            return to;
        }

        /* the same hash: equal keys go right (ngx_rbtree_insert_value) */
        node = node->right;
    }

    to = ngx_pcalloc(batch->pool, sizeof(ngx_acs_recipient_t));
    if (to == NULL) {
        return NULL;
    }

    if (ngx_array_init(&devices, batch->pool, 4, sizeof(ngx_acs_device_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_acs_registry_list(ngx_acs_engine.registry, raw_id, batch->pool,
                              batch->request->connection->log, &devices)
        != NGX_OK)
    {
        return NULL;
    }

    to->raw_id = *raw_id;
    to->devs = devices.elts;
    to->ndevs = devices.nelts;

    for (i = 0; i < to->ndevs; i++) {
        if (ngx_acs_platform(to->devs[i].platform)->calls_only) {
            to->has_voip = 1;
        }
    }

    to->node.key = hash;
    ngx_rbtree_insert(&batch->recipients, &to->node);

    return to;
}


/*
 * The delivery is taken when its pushes fit beside those queued and the
 * room promised to others (a delivery of calls alone may use a reserve
 * above acs_notify_queue: a call rings for 30 seconds), or when it is
 * larger than the whole queue and no other such delivery streams in.
 */

static void
ngx_acs_batch_admit(ngx_acs_batch_t *batch)
{
    ngx_uint_t         limit;
    ngx_log_t         *log;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (batch->state != NGX_ACS_BATCH_PREPARING) {
        /* answered while being prepared */
        ngx_acs_batch_release(batch);
        return;
    }

    log = batch->request->connection->log;

    if (batch->pushes == 0) {
        batch->state = NGX_ACS_BATCH_MADE;
        ngx_acs_batch_answer(batch, NGX_HTTP_OK, "dispatched");
        ngx_acs_batch_release(batch);
        return;
    }

    limit = e->queue_size;

    if (batch->calls == batch->pushes) {
        limit += ngx_max(e->queue_size / 8, NGX_ACS_CALL_RESERVE);
    }

    if (e->queued + e->reserved + batch->pushes <= limit) {
        batch->reserved = batch->pushes;
        e->reserved += batch->pushes;

    } else if (batch->pushes > e->queue_size && e->oversize == NULL) {
        e->oversize = batch;

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "acs_notify: a delivery of %ui pushes, more than "
                      "acs_notify_queue %ui, streams into the queue",
                      batch->pushes, e->queue_size);

    } else {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "acs_notify: queue full (%ui pushes queued, %ui "
                      "promised, %ui more asked), delivery refused with 503",
                      e->queued, e->reserved, batch->pushes);

        batch->state = NGX_ACS_BATCH_EXPIRED;
        ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "unavailable:queue_full");
        ngx_acs_batch_release(batch);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: delivery admitted: %ui pushes, %ui calls, "
                   "%ui queued", batch->pushes, batch->calls, e->queued);

    batch->state = NGX_ACS_BATCH_MAKING;

    /* calls first */

    if (batch->calls) {
        ngx_queue_insert_head(&e->making, &batch->link);

    } else {
        ngx_queue_insert_tail(&e->making, &batch->link);
    }

    if (batch->conf->ack == NGX_ACS_ACK_ACCEPTED) {
        /* Event Grid is told now; the jobs go on without the request */
        ngx_acs_batch_answer(batch, NGX_HTTP_ACCEPTED, "accepted");
    }

    ngx_acs_pump_post();
}


/* jobs for the devices of the batch, while the budget and the room last */

static void
ngx_acs_batch_make(ngx_acs_batch_t *batch, ngx_uint_t *budget)
{
    ngx_int_t                   rc;
    ngx_log_t                  *log;
    ngx_uint_t                  call;
    ngx_acs_job_t              *job;
    ngx_acs_item_t             *item;
    ngx_acs_device_t           *dev;
    ngx_acs_platform_t         *p;
    ngx_acs_engine_t           *e = &ngx_acs_engine;
    ngx_http_acs_notify_ctx_t  *ctx;

    log = batch->request ? batch->request->connection->log : e->log;
    ctx = batch->request
          ? ngx_http_get_module_ctx(batch->request,
                                    ngx_http_acs_notify_module)
          : NULL;

    for ( /* void */ ; batch->next_item < batch->nitems; batch->next_item++)
    {
        item = &batch->items[batch->next_item];

        if (item->to == NULL) {
            continue;
        }

        call = (item->msg.intent == NGX_ACS_INTENT_INCOMING_CALL);

        for ( /* void */ ; item->next < item->to->ndevs; item->next++) {

            dev = &item->to->devs[item->next];

            if (!ngx_acs_item_wants(batch, item, dev, 0)) {
                continue;
            }

            if (*budget == 0) {
                return;
            }

            if (batch->reserved == 0 && e->queued + e->reserved
                                        >= e->queue_size)
            {
                /* the oversize batch waits for room */
                return;
            }

            (*budget)--;

            batch->made++;

            if (batch->reserved) {
                batch->reserved--;
                e->reserved--;
            }

            job = ngx_acs_job_alloc();
            if (job == NULL) {
                batch->failed++;
                continue;
            }

            ngx_acs_dedup_key(job->key, &item->msg.id, &item->msg.type,
                              &item->msg.subject, &item->msg.recipient,
                              &dev->handle);

            rc = e->dedup ? ngx_acs_dedup_claim(e->dedup, job->key,
                                                batch->owner, log)
                          : NGX_OK;

            if (rc != NGX_OK) {
                job->u.queue.next = (ngx_queue_t *) e->free_jobs;
                e->free_jobs = job;

                p = ngx_acs_platform(dev->platform);

                if (rc == NGX_BUSY) {
                    batch->busy++;
                    ngx_log_error(NGX_LOG_INFO, log, 0,
                                  "acs_notify: event \"%V\" is being pushed "
                                  "to device \"%V\" by another delivery, "
                                  "skipped", &item->msg.id,
                                  &dev->device_id);
                    continue;
                }

                if (ctx) {
                    ctx->duplicates++;
                }

                ngx_acs_stats_push(p->id, NGX_ACS_OUT_DUPLICATE);
                ngx_log_error(NGX_LOG_INFO, log, 0,
                              "acs_notify: event \"%V\" already pushed to "
                              "device \"%V\", skipped", &item->msg.id,
                              &dev->device_id);
                continue;
            }

            job->batch = batch;
            job->item = item;
            job->dev = dev;
            job->call = call;
            job->hub = (ngx_acs_platform(dev->platform)->voip
                        && batch->conf->voip_hub)
                       ? batch->conf->voip_hub : batch->conf->hub;

            ngx_queue_insert_tail(&batch->jobs, &job->sibling);
            batch->pending++;
            e->queued++;
            ngx_acs_stats_queue(1);

            ngx_acs_job_enqueue(job, 0);
        }
    }

    batch->state = NGX_ACS_BATCH_MADE;
    ngx_queue_remove(&batch->link);

    if (e->oversize == batch) {
        e->oversize = NULL;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: delivery made: %ui jobs, %ui skipped, %ui "
                   "busy", batch->pending, batch->made - batch->pending,
                   batch->busy);

    ngx_acs_batch_check(batch);
}


static ngx_acs_job_t *
ngx_acs_job_alloc(void)
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

        e->records += NGX_ACS_JOB_CHUNK;
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

    if (head) {
        ngx_queue_insert_head(q, &job->u.queue);

    } else {
        ngx_queue_insert_tail(q, &job->u.queue);
    }
}


static void
ngx_acs_pump_post(void)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (!e->pump.posted) {
        ngx_post_event(&e->pump, &ngx_posted_events);
    }
}


/*
 * A pass of the engine: prepare, make, start, each with a budget.  When a
 * budget runs out, the rest waits for the next turn of the event loop
 * (ngx_posted_next_events), after the events and timers due.
 */

static void
ngx_acs_pump(ngx_event_t *ev)
{
    ngx_uint_t         i, budget, starts, more;
    ngx_queue_t       *q, *next;
    ngx_acs_job_t     *job;
    ngx_acs_lane_t    *lane;
    ngx_acs_batch_t   *batch;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    more = 0;

    /* prepare */

    budget = NGX_ACS_PASS_EVENTS;

    while (!ngx_queue_empty(&e->preparing)) {
        q = ngx_queue_head(&e->preparing);
        batch = ngx_queue_data(q, ngx_acs_batch_t, link);

        if (ngx_acs_batch_prepare(batch, &budget) == NGX_AGAIN) {
            more = 1;
            break;
        }

        ngx_queue_remove(q);
        ngx_acs_batch_admit(batch);
    }

    /* make */

    budget = NGX_ACS_PASS_JOBS;

    for (q = ngx_queue_head(&e->making);
         q != ngx_queue_sentinel(&e->making) && budget;
         q = next)
    {
        next = ngx_queue_next(q);
        batch = ngx_queue_data(q, ngx_acs_batch_t, link);

        ngx_acs_batch_make(batch, &budget);
    }

    if (budget == 0) {
        more = 1;
    }

    /* start */

    starts = NGX_ACS_PASS_STARTS;

    for (i = 0; i < e->nlanes; i++) {
        lane = &e->lanes[i];

        while (lane->active < lane->slots && !lane->paused) {

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
            job = ngx_queue_data(q, ngx_acs_job_t, u.queue);

            (void) ngx_acs_job_start(job);
        }
    }

    if (more) {
        ngx_post_event(&e->pump, &ngx_posted_next_events);
    }

    i = ngx_acs_curl_sockets();

    if (i != e->sockets) {
        ngx_acs_stats_connections((ngx_int_t) i - (ngx_int_t) e->sockets);
        e->sockets = i;
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

    switch (ngx_acs_job_body(job, &body)) {

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

    if (job->handle->active >= lane->cap) {
        /* one slow device does not hold every connection */
        job->state = NGX_ACS_JOB_PARKED;
        ngx_queue_insert_tail(&job->handle->parked, &job->u.queue);

        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "acs_notify: push of \"%V\" to %*s... parked",
                       &job->item->msg.id, ngx_min(job->dev->handle.len, 8),
                       job->dev->handle.data);
        return NGX_DECLINED;
    }

    slot = e->free_slots;

    if (slot) {
        e->free_slots = slot->next;

    } else {
        slot = ngx_acs_engine_alloc(sizeof(ngx_acs_slot_t));
        if (slot == NULL) {
            ngx_acs_handle_put(lane, job->handle);
            job->handle = NULL;
            ngx_acs_job_retry(job, 0, "out of memory");
            return NGX_DECLINED;
        }
    }

    ngx_memzero(&slot->http, sizeof(ngx_acs_http_t));

    h = &slot->http;

    h->headers = ngx_acs_job_headers(job);
    h->url = (const char *) hub->url.data;
    h->body = body.data;
    h->body_len = body.len;
    h->ca_file = hub->ca_file.len ? (const char *) hub->ca_file.data : NULL;
    h->connect_to = hub->connect_to_list;
    h->http2 = hub->http2;
    h->timeout = hub->timeout;
    h->handler = ngx_acs_job_done;
    h->data = slot;

    if (h->headers == NULL || ngx_acs_curl_submit(h, e->log) != NGX_OK) {
        if (h->headers) {
            curl_slist_free_all(h->headers);
        }

        slot->next = e->free_slots;
        e->free_slots = slot;

        ngx_acs_handle_put(lane, job->handle);
        job->handle = NULL;
        ngx_acs_job_retry(job, 0, "not started");
        return NGX_DECLINED;
    }

    slot->job = job;
    slot->start = ngx_current_msec;

    job->state = NGX_ACS_JOB_RUNNING;
    job->attempt++;
    job->handle->active++;
    lane->active++;

    ngx_acs_stats_in_flight(1);

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "acs_notify: push of \"%V\" to %*s... started, attempt "
                   "%ui", &job->item->msg.id,
                   ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                   (ngx_uint_t) job->attempt);

    return NGX_OK;
}


/*
 * The payload of the job's event for its platform, rendered the first
 * time a job needs it and kept in the batch: state 1 rendered, 2 does not
 * fit (NGX_DECLINED, logged for each device).
 */

static ngx_int_t
ngx_acs_job_body(ngx_acs_job_t *job, ngx_str_t *body)
{
    u_char              *copy;
    ngx_int_t            rc;
    ngx_str_t            out;
    ngx_acs_item_t      *item;
    ngx_acs_batch_t     *batch;
    ngx_acs_template_t  *tpl;
    ngx_acs_platform_t  *p;
    ngx_acs_engine_t    *e = &ngx_acs_engine;

    item = job->item;
    batch = job->batch;
    p = ngx_acs_platform(job->dev->platform);

    if (item->state[p->id] == 0) {

        tpl = ngx_acs_template_find(batch->conf->render.templates,
                                    item->msg.rule, p);

        if (tpl) {
            rc = ngx_acs_template_render(e->scratch, tpl, &item->msg, &out);

        } else {
            rc = ngx_acs_render(e->scratch, p, &item->msg, &out);
        }

        if (rc == NGX_OK) {
            copy = ngx_pnalloc(batch->pool, out.len);
            if (copy == NULL) {
                rc = NGX_ERROR;

            } else {
                ngx_memcpy(copy, out.data, out.len);
                item->body[p->id].data = copy;
                item->body[p->id].len = out.len;
                item->state[p->id] = 1;
            }

        } else if (rc == NGX_DECLINED) {
            item->state[p->id] = 2;
        }

        ngx_reset_pool(e->scratch);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "acs_notify: event \"%V\" for %V: %s payload, %uz "
                       "bytes", &item->msg.id, &p->name,
                       tpl ? "template" : "built-in", item->body[p->id].len);
    }

    if (item->state[p->id] == 2) {
        ngx_log_error(NGX_LOG_WARN, e->log, 0,
                      "acs_notify: no push of event \"%V\" for device "
                      "\"%V\" (%V): the payload does not fit the "
                      "platform's limit", &item->msg.id,
                      &job->dev->device_id, &p->name);
        return NGX_DECLINED;
    }

    *body = item->body[p->id];

    return NGX_OK;
}


static struct curl_slist *
ngx_acs_job_headers(ngx_acs_job_t *job)
{
    u_char              *p, line[8192];
    ngx_str_t            token;
    ngx_uint_t           i, n;
    ngx_acs_platform_t  *pf;
    struct curl_slist   *list, *next;
    ngx_acs_header_t     h[NGX_ACS_PUSH_HEADERS];

    pf = ngx_acs_platform(job->dev->platform);
    token = ngx_acs_hub_token(job->hub, ngx_time());

    list = NULL;

#define ngx_acs_add(fmt, ...)                                                 \
    p = ngx_snprintf(line, sizeof(line) - 1, fmt, __VA_ARGS__);               \
    *p = '\0';                                                                \
    next = curl_slist_append(list, (char *) line);                            \
    if (next == NULL) {                                                       \
        curl_slist_free_all(list);                                            \
        return NULL;                                                          \
    }                                                                         \
    list = next

    ngx_acs_add("Authorization: %V", &token);
    ngx_acs_add("Content-Type: %V", &pf->content_type);
    ngx_acs_add("ServiceBusNotification-Format: %V", &pf->format);
    ngx_acs_add("ServiceBusNotification-DeviceHandle: %V", &job->dev->handle);
    ngx_acs_add("x-ms-version: %V", &job->hub->api_version);

    n = ngx_acs_render_headers(pf, &job->item->msg, job->dev, h);

    for (i = 0; i < n; i++) {
        ngx_acs_add("%V: %V", &h[i].name, &h[i].value);
    }

    /* no "Expect: 100-continue" round trip */
    ngx_acs_add("%s", "Expect:");

#undef ngx_acs_add

    return list;
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

    if (!ngx_queue_empty(&h->parked) && h->active < lane->cap) {
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

    long               status;
    ngx_str_t          tracking, detail;
    ngx_msec_t         delay;
    ngx_acs_job_t     *job;
    ngx_acs_lane_t    *lane;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    job = slot->job;
    lane = ngx_acs_job_lane(job);
    status = h->status;

    lane->active--;
    job->handle->active--;
    ngx_acs_handle_put(lane, job->handle);
    job->handle = NULL;

    ngx_acs_stats_in_flight(-1);
    ngx_acs_stats_hub_answer(job->hub->index, (status >= 200) ? status : 0,
                             ngx_current_msec - slot->start);

    ngx_acs_pump_post();

    tracking.data = h->tracking_id;
    tracking.len = h->tracking_id_len;
    detail.data = h->detail;
    detail.len = h->detail_len;

    job->status = (status >= 200) ? (uint16_t) status : 0;

    /* free again, but intact until the pump starts the next transfer */

    slot->next = e->free_slots;
    e->free_slots = slot;

    /*
     * A transfer error after a final status (an HTTP/2 peer may answer
     * before it read the body, then reset the stream with NO_ERROR, and
     * libcurl reports CURLE_HTTP2_STREAM): the hub decided, the status
     * says what; retrying would push twice.
     */

    if (h->result != CURLE_OK && status < 200) {

        ngx_cpystrn(lane->error, (u_char *) (h->error[0]
                                  ? h->error
                                  : curl_easy_strerror(h->result)),
                    CURL_ERROR_SIZE);

        if (ngx_acs_lane_failure(h->result, h)) {
            /* the host refused: the lane pauses, the job waits in it */
            ngx_acs_lane_pause(lane, h);

            if (job->batch->state != NGX_ACS_BATCH_EXPIRED
                && (ngx_msec_int_t) (job->batch->deadline - ngx_current_msec)
                   > 0)
            {
                ngx_acs_job_enqueue(job, 1);
                return;
            }
        }

        ngx_acs_job_retry(job, 0, (char *) lane->error);
        return;
    }

    lane->failures = 0;

    if (status >= 200 && status < 300) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, e->log, 0,
                       "acs_notify: push of \"%V\" to %*s... sent",
                       &job->item->msg.id, ngx_min(job->dev->handle.len, 8),
                       job->dev->handle.data);

        ngx_acs_job_final(job, NGX_ACS_FINAL_SENT);
        return;
    }

    delay = (ngx_msec_t) h->retry_after * 1000;

    switch (status) {

    case 410:
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: Notification Hubs reports device handle "
                      "%*s... of \"%V\" gone, removed",
                      ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                      &job->item->msg.recipient);

        ngx_acs_gone_add(job);
        ngx_acs_job_final(job, NGX_ACS_FINAL_GONE);
        return;

    case 401:
        if (!job->renewed) {
            /* a token the hub no longer takes: sign a new one, once */
            job->renewed = 1;
            ngx_acs_hub_token_reset(job->hub);
            ngx_acs_job_retry(job, 1, NULL);
            return;
        }

        break;

    case 403:
        if (h->retry_after) {
            /* the quota answer of older API versions */
            ngx_acs_job_retry(job, delay, "HTTP 403 quota");
            return;
        }

        break;

    case 429:
        ngx_acs_job_retry(job, delay, "HTTP 429 throttled");
        return;

    case 408:
        ngx_acs_job_retry(job, 0, "HTTP 408");
        return;

    default:
        if (status >= 500) {
            ngx_snprintf(lane->error, CURL_ERROR_SIZE - 1, "HTTP %l%Z",
                         status);
            ngx_acs_job_retry(job, 0, (char *) lane->error);
            return;
        }
    }

    /* 400, 401, 403, 404, 413 and other answers: never better on retry */

    while (detail.len && (detail.data[detail.len - 1] == '\n'
                          || detail.data[detail.len - 1] == '\r'))
    {
        detail.len--;
    }

    ngx_log_error(NGX_LOG_ERR, e->log, 0,
                  "acs_notify: Notification Hubs \"%V\" rejected the push of "
                  "event \"%V\" to %*s...: %l, TrackingId: %V%s%V",
                  &job->hub->name, &job->item->msg.id,
                  ngx_min(job->dev->handle.len, 8), job->dev->handle.data,
                  status, &tracking, detail.len ? ", " : "", &detail);

    ngx_acs_job_final(job, NGX_ACS_FINAL_REJECTED);
}


/*
 * A failure of the host rather than of the push: no connection (refused,
 * unresolved, TLS failed or not verified, or not made in time).
 */

static ngx_uint_t
ngx_acs_lane_failure(CURLcode rc, ngx_acs_http_t *h)
{
    switch (rc) {

    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return 1;

    case CURLE_OPERATION_TIMEDOUT:
        return !h->connected;

    default:
        return 0;
    }
}


/*
 * The lane stops starting transfers for a while: 250 ms after the first
 * failure in a row, doubling up to 5 s.  Its queued jobs wait; a retry of
 * each job would only multiply the refused connections.
 */

static void
ngx_acs_lane_pause(ngx_acs_lane_t *lane, ngx_acs_http_t *h)
{
    ngx_msec_t  pause;

    /* the other transfers of a round fail too: one failure a round */

    if (lane->paused) {
        return;
    }

    lane->failures++;

    pause = NGX_ACS_BACKOFF_BASE << ngx_min(lane->failures - 1, 5);
    pause = ngx_min(pause, NGX_ACS_BACKOFF_MAX);

    ngx_log_error(NGX_LOG_WARN, ngx_acs_engine.log, 0,
                  "acs_notify: no connection to Notification Hubs \"%V\" "
                  "(%ui in a row), its pushes wait %Mms: %s",
                  &lane->hub->name, lane->failures, pause, lane->error);

    lane->paused = 1;
    ngx_add_timer(&lane->wake, pause);
}


static void
ngx_acs_lane_wake(ngx_event_t *ev)
{
    ngx_acs_lane_t  *lane;

    lane = (ngx_acs_lane_t *) ((u_char *) ev - offsetof(ngx_acs_lane_t,
                                                         wake));
    lane->paused = 0;

    ngx_acs_pump_post();
}


/*
 * Again after delay (an exponential backoff with jitter when 0 and there
 * is a reason), if that is before the deadline; the job fails otherwise.
 */

static void
ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay, const char *why)
{
    ngx_uint_t         n;
    ngx_msec_t         backoff;
    ngx_acs_batch_t   *batch;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    batch = job->batch;

    if (delay == 0 && why != NULL) {
        n = job->attempt ? job->attempt - 1 : 0;
        backoff = NGX_ACS_BACKOFF_BASE << ngx_min(n, 5);
        backoff = ngx_min(backoff, NGX_ACS_BACKOFF_MAX);
        delay = backoff / 2 + (ngx_msec_t) ngx_random() % backoff;
    }

    /* past the deadline, or so far that it would be: give up now */

    if (batch->state == NGX_ACS_BATCH_EXPIRED
        || delay >= (ngx_msec_t) NGX_ACS_CURL_RETRY_MAX * 1000
        || (ngx_msec_int_t) (batch->deadline - ngx_current_msec - delay)
           <= 0)
    {
        ngx_log_error(NGX_LOG_ERR, e->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... through "
                      "\"%V\" failed after %ui attempts: %s",
                      &job->item->msg.id, ngx_min(job->dev->handle.len, 8),
                      job->dev->handle.data, &job->hub->name,
                      (ngx_uint_t) job->attempt, why ? why : "401");
        ngx_acs_job_final(job, NGX_ACS_FINAL_FAILED);
        return;
    }

    ngx_acs_stats_retry();

    if (why) {
        ngx_log_error(NGX_LOG_INFO, e->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... will be "
                      "retried in %Mms: %s", &job->item->msg.id,
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
    ngx_acs_pump_post();
}


/* the job is out of whatever queue or tree holds it */

static void
ngx_acs_job_unlink(ngx_acs_job_t *job)
{
    switch (job->state) {

    case NGX_ACS_JOB_QUEUED:
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
    ngx_acs_batch_t   *batch;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    static ngx_acs_outcome_e  outcomes[] = {
        NGX_ACS_OUT_SENT, NGX_ACS_OUT_GONE, NGX_ACS_OUT_REJECTED,
        NGX_ACS_OUT_FAILED, NGX_ACS_OUT_FAILED
    };

    batch = job->batch;

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, e->log, 0,
                   "acs_notify: push of \"%V\" to %*s... final: %ui",
                   &job->item->msg.id, ngx_min(job->dev->handle.len, 8),
                   job->dev->handle.data, (ngx_uint_t) final);

    if (final != NGX_ACS_FINAL_SKIPPED) {
        ngx_acs_stats_push(job->dev->platform, outcomes[final]);
    }

    if (e->dedup) {
        if (final == NGX_ACS_FINAL_SENT) {
            ngx_acs_dedup_confirm(e->dedup, job->key, batch->owner);

        } else {
            ngx_acs_dedup_release(e->dedup, job->key, batch->owner);
        }
    }

    switch (final) {

    case NGX_ACS_FINAL_SENT:
        ngx_acs_stats_delivery_time(ngx_current_msec - batch->received);
        batch->sent++;
        break;

    case NGX_ACS_FINAL_FAILED:
    case NGX_ACS_FINAL_DROPPED:
        batch->failed++;
        break;

    default:
        break;
    }

    ngx_queue_remove(&job->sibling);
    batch->pending--;
    e->queued--;
    ngx_acs_stats_queue(-1);

    job->u.queue.next = (ngx_queue_t *) e->free_jobs;
    e->free_jobs = job;

    /* room for the oversize delivery */

    if (e->oversize) {
        ngx_acs_pump_post();
    }

    ngx_acs_batch_check(batch);
}


/* the batch is answered when every push is final, freed when unused */

static void
ngx_acs_batch_check(ngx_acs_batch_t *batch)
{
    if (batch->pending || batch->state == NGX_ACS_BATCH_PREPARING
        || batch->state == NGX_ACS_BATCH_MAKING)
    {
        return;
    }

    if (batch->request) {
        if (batch->failed || batch->busy) {
            ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "unavailable:dispatch");

        } else {
            ngx_acs_batch_answer(batch, NGX_HTTP_OK, "dispatched");
        }
    }

    ngx_acs_batch_release(batch);
}


/*
 * The deadline: pushes not started (queued, parked, waiting for a retry,
 * not even made) are not started for this delivery; Event Grid gets 503
 * and delivers again later; transfers running finish on their own.
 */

static void
ngx_acs_batch_deadline(ngx_event_t *ev)
{
    ngx_acs_batch_t  *batch;

    batch = (ngx_acs_batch_t *) ((u_char *) ev
                                 - offsetof(ngx_acs_batch_t, timer));

    ngx_acs_batch_expire(batch);

    if (batch->request) {
        ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                             "unavailable:dispatch");
    }

    ngx_acs_batch_release(batch);
}


static void
ngx_acs_batch_expire(ngx_acs_batch_t *batch)
{
    ngx_uint_t         logged, running, unmade;
    ngx_queue_t       *q, *next;
    ngx_acs_job_t     *job;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    switch (batch->state) {

    case NGX_ACS_BATCH_PREPARING:
    case NGX_ACS_BATCH_MAKING:
        ngx_queue_remove(&batch->link);
        break;

    case NGX_ACS_BATCH_EXPIRED:
        return;

    default:
        break;
    }

    if (e->oversize == batch) {
        e->oversize = NULL;
    }

    e->reserved -= batch->reserved;
    batch->reserved = 0;

    unmade = batch->pushes - batch->made;
    batch->state = NGX_ACS_BATCH_EXPIRED;

    logged = 0;
    running = 0;

    /* the batch stays while its jobs end */
    batch->pending++;

    for (q = ngx_queue_head(&batch->jobs);
         q != ngx_queue_sentinel(&batch->jobs);
         q = next)
    {
        next = ngx_queue_next(q);
        job = ngx_queue_data(q, ngx_acs_job_t, sibling);

        if (job->state == NGX_ACS_JOB_RUNNING) {
            running++;
            continue;
        }

        if (job->attempt && logged++ < NGX_ACS_DROP_LOG) {
            ngx_log_error(NGX_LOG_ERR, e->log, 0,
                          "acs_notify: push of event \"%V\" to %*s... "
                          "through \"%V\" failed after %ui attempts: %s",
                          &job->item->msg.id,
                          ngx_min(job->dev->handle.len, 8),
                          job->dev->handle.data, &job->hub->name,
                          (ngx_uint_t) job->attempt,
                          job->status ? "not final at the deadline"
                                      : (char *) ngx_acs_job_lane(job)->error);
        }

        ngx_acs_job_unlink(job);

        if (job->state == NGX_ACS_JOB_PARKED) {
            ngx_acs_handle_put(ngx_acs_job_lane(job), job->handle);
            job->handle = NULL;
        }

        batch->dropped++;
        ngx_acs_job_final(job, NGX_ACS_FINAL_DROPPED);
    }

    batch->pending--;

    if (batch->dropped || unmade || running) {
        ngx_log_error(NGX_LOG_WARN, e->log, 0,
                      "acs_notify: %ui of %ui pushes not final at the "
                      "dispatch deadline: %ui dropped (queued or waiting "
                      "for a retry), %ui never queued, %ui running",
                      batch->dropped + unmade + running, batch->pushes,
                      batch->dropped, unmade, running);
    }

    batch->failed += unmade;

    ngx_acs_pump_post();
}


static void
ngx_acs_batch_answer(ngx_acs_batch_t *batch, ngx_uint_t status,
    const char *result)
{
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_acs_notify_ctx_t  *ctx;

    r = batch->request;

    if (r == NULL) {
        return;
    }

    batch->request = NULL;

    /* the request's pool must not call back into a batch that may be gone */
    batch->cleanup->handler = NULL;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
    c = r->connection;

    if (result) {
        ctx->result.data = (u_char *) result;
        ctx->result.len = ngx_strlen(result);
    }

    rc = (status == NGX_HTTP_INTERNAL_SERVER_ERROR)
         ? (ngx_int_t) status
         : ngx_acs_dispatch_answer(r, status, batch->sent);

    if (batch->sync) {
        /* the body handler finalizes it */
        *batch->sync = rc;
        batch->sync = NULL;
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* the request goes away (answered, or its connection closed) */

static void
ngx_acs_batch_detach(void *data)
{
    ngx_acs_batch_t  *batch = data;

    if (batch->request == NULL) {
        return;
    }

    batch->request = NULL;

    if (batch->state == NGX_ACS_BATCH_PREPARING) {
        /* its events go with the request */
        ngx_acs_batch_expire(batch);
    }

    ngx_acs_batch_release(batch);
}


static void
ngx_acs_batch_release(ngx_acs_batch_t *batch)
{
    if (batch->pending || batch->request
        || batch->state == NGX_ACS_BATCH_PREPARING
        || batch->state == NGX_ACS_BATCH_MAKING)
    {
        return;
    }

    if (batch->timer.timer_set) {
        ngx_del_timer(&batch->timer);
    }

    ngx_destroy_pool(batch->pool);
}


/*
 * Gone handles are removed from the registry in one write transaction at
 * the next turn of the event loop, whatever their number.
 */

static void
ngx_acs_gone_add(ngx_acs_job_t *job)
{
    ngx_acs_gone_t    *g;
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (e->gone == NULL) {
        e->gone = ngx_array_create(e->gone_pool, 16, sizeof(ngx_acs_gone_t));
        if (e->gone == NULL) {
            return;
        }
    }

    g = ngx_array_push(e->gone);
    if (g == NULL) {
        return;
    }

    g->raw_id.len = job->item->msg.recipient.len;
    g->raw_id.data = ngx_pstrdup(e->gone_pool, &job->item->msg.recipient);
    g->handle.len = job->dev->handle.len;
    g->handle.data = ngx_pstrdup(e->gone_pool, &job->dev->handle);

    if (g->raw_id.data == NULL || g->handle.data == NULL) {
        e->gone->nelts--;
        return;
    }

    if (!e->flush.posted) {
        ngx_post_event(&e->flush, &ngx_posted_next_events);
    }
}


static void
ngx_acs_gone_flush(ngx_event_t *ev)
{
    ngx_acs_engine_t  *e = &ngx_acs_engine;

    if (e->gone == NULL) {
        return;
    }

    (void) ngx_acs_registry_remove_handles(e->registry, e->gone->elts,
                                           e->gone->nelts, e->log);

    e->gone = NULL;
    ngx_reset_pool(e->gone_pool);
}


static ngx_int_t
ngx_acs_dispatch_answer(ngx_http_request_t *r, ngx_uint_t status,
    ngx_uint_t pushes)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    static ngx_str_t  retry_after = ngx_string(NGX_ACS_RETRY_AFTER_503);

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
    ctx->pushes = pushes;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_acs_add_header(r, "Retry-After", &retry_after) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_acs_send(r, status, NULL);
}
