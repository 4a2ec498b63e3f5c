
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Deliveries (docs/dispatch.md, sections 5 and 7).  A delivery is a batch
 * with a pool of its own, so that it can outlive the request (an
 * "accepted" answer, or 503 at the deadline while pushes are running):
 *
 *   prepare   each event is routed, aged, its recipient looked up and
 *             its message made (ngx_acs_prepare.c); a delivery of more
 *             than 256 events is prepared 256 a turn of the event loop,
 *             the others at once
 *   admit     the delivery is taken when its pushes fit in acs_notify_queue
 *             beside those queued and the room promised to others, or,
 *             when it is larger than the whole queue, as the one oversize
 *             delivery whose pushes stream in as room frees; else 503 at
 *             once
 *   make      a job per device (ngx_acs_engine.h), de-duplicated by a
 *             claim in the shared zone made under the lookup's lock
 *
 * The engine (ngx_acs_engine.c) sends the jobs and says when each is
 * final.  In "dispatched" mode Event Grid gets 200 when every push is
 * sent, gone or rejected, 503 with Retry-After when one failed, was in
 * flight in another delivery, or is not final at the deadline: then jobs
 * not started are dropped and not started afterwards; jobs running finish
 * in the background.  Event Grid delivers again and de-duplication skips
 * the devices already reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_notify.h"
#include "ngx_acs_conf.h"
#include "ngx_acs_http.h"
#include "ngx_acs_json.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_dedup.h"
#include "ngx_acs_engine.h"
#include "ngx_acs_lane.h"
#include "ngx_acs_batch.h"
#include "ngx_acs_dispatch.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_CALL_RESERVE     16       /* extra room for call pushes,
                                             at least */
#define NGX_ACS_PASS_EVENTS      256      /* events prepared per pass */
#define NGX_ACS_PASS_JOBS        1024     /* jobs made per pass */
#define NGX_ACS_DROP_LOG         8        /* dropped jobs logged alone */


typedef struct {
    ngx_log_t                  *log;
    ngx_acs_store_t            *store;
    ngx_acs_dedup_t            *dedup;
    ngx_uint_t                  queue_size;    /* acs_notify_queue */
    ngx_uint_t                  reserved;      /* held by admitted batches */
    ngx_acs_batch_t            *oversize;      /* larger than the queue */
    ngx_queue_t                 preparing;     /* of batches */
    ngx_queue_t                 making;
    ngx_uint_t                  serial;
} ngx_acs_dispatcher_t;


static ngx_uint_t ngx_acs_dispatch_work(void);
static void ngx_acs_dispatch_final(ngx_acs_job_t *job, ngx_acs_final_e final);

static ngx_acs_batch_t *ngx_acs_batch_create(ngx_http_request_t *r,
    ngx_array_t *events);
static ngx_int_t ngx_acs_batch_prepare(ngx_acs_batch_t *batch,
    ngx_uint_t *budget);
static void ngx_acs_batch_admit(ngx_acs_batch_t *batch);
static ngx_int_t ngx_acs_batch_distance(ngx_acs_batch_t *batch);
static void ngx_acs_batch_make(ngx_acs_batch_t *batch, ngx_uint_t *budget);
static void ngx_acs_batch_deadline(ngx_event_t *ev);
static void ngx_acs_batch_expire(ngx_acs_batch_t *batch);
static void ngx_acs_batch_check(ngx_acs_batch_t *batch);
static void ngx_acs_batch_answer(ngx_acs_batch_t *batch, ngx_uint_t status,
    ngx_acs_result_e result);
static void ngx_acs_batch_detach(void *data);
static void ngx_acs_batch_release(ngx_acs_batch_t *batch);
static ngx_int_t ngx_acs_dispatch_answer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t pushes);


static ngx_acs_dispatcher_t  ngx_acs_dispatcher;


ngx_int_t
ngx_acs_dispatch_init_process(ngx_cycle_t *cycle)
{
    ngx_acs_dispatcher_t             *e = &ngx_acs_dispatcher;
    ngx_http_acs_notify_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_acs_notify_module);

    ngx_memzero(e, sizeof(ngx_acs_dispatcher_t));

    e->log = cycle->log;
    e->store = amcf->store;
    e->dedup = amcf->dedup;
    e->queue_size = amcf->queue_size;

    ngx_queue_init(&e->preparing);
    ngx_queue_init(&e->making);

    return ngx_acs_engine_init(cycle, &amcf->hubs,
                               ngx_acs_store_registry(amcf->store),
                               amcf->dedup, ngx_acs_dispatch_work,
                               ngx_acs_dispatch_final);
}


void
ngx_acs_dispatch_exit_process(ngx_cycle_t *cycle)
{
    ngx_acs_engine_exit(cycle);
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
        ctx->result = NGX_ACS_RESULT_UNAVAILABLE_SHUTDOWN;
        return ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE, 0);
    }

    if (ngx_acs_dispatcher.log == NULL) {
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
        ngx_destroy_pool(batch->delivery.pool);
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

    ngx_queue_insert_tail(&ngx_acs_dispatcher.preparing, &batch->link);

    if (events->nelts > NGX_ACS_PASS_EVENTS) {
        ngx_acs_engine_post();
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
    ngx_time_t       *tp;
    ngx_acs_batch_t  *batch;

    pool = ngx_create_pool(4096, ngx_acs_dispatcher.log);
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

    batch->events = events;
    batch->conf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);
    batch->store = ngx_acs_dispatcher.store;
    batch->state = NGX_ACS_BATCH_PREPARING;

    batch->delivery.pool = pool;
    batch->delivery.templates = batch->conf->render.templates;
    batch->delivery.deadline = ngx_current_msec
                               + batch->conf->dispatch_timeout;

    /* on the monotonic clock of ngx_current_msec, from the request's start */
    tp = ngx_timeofday();
    batch->delivery.received = ngx_current_msec
                               - ((tp->sec - r->start_sec) * 1000
                                  + tp->msec - r->start_msec);
    batch->delivery.owner = ((uint64_t) ngx_pid << 32)
                            | (uint32_t) ++ngx_acs_dispatcher.serial;

    ngx_queue_init(&batch->jobs);
    ngx_rbtree_init(&batch->recipients, &batch->sentinel,
                    ngx_rbtree_insert_value);

    ngx_acs_worker_event(&batch->timer, ngx_acs_batch_deadline,
                         &batch->dummy, ngx_acs_dispatcher.log);

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
                                 NGX_ACS_RESULT_UNAVAILABLE_REGISTRY);
            batch->state = NGX_ACS_BATCH_EXPIRED;
            return NGX_ERROR;
        }

        if (rc != NGX_OK) {
            ngx_acs_batch_answer(batch, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                 NGX_ACS_RESULT_NONE);
            batch->state = NGX_ACS_BATCH_EXPIRED;
            return NGX_ERROR;
        }

        batch->nitems++;
    }

    /* the events are the request's: not used afterwards */
    batch->events = NULL;

    return NGX_OK;
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
    ngx_uint_t             limit, queued;
    ngx_log_t             *log;
    ngx_acs_dispatcher_t  *e = &ngx_acs_dispatcher;

    if (batch->state != NGX_ACS_BATCH_PREPARING) {
        /* answered while being prepared */
        ngx_acs_batch_release(batch);
        return;
    }

    log = batch->request->connection->log;

    if (batch->pushes == 0) {
        /* nothing to push; "stale" when an event was too old for it */
        batch->state = NGX_ACS_BATCH_MADE;
        ngx_acs_batch_answer(batch, NGX_HTTP_OK,
                             batch->stale ? NGX_ACS_RESULT_STALE
                                          : NGX_ACS_RESULT_DISPATCHED);
        ngx_acs_batch_release(batch);
        return;
    }

    if (ngx_acs_batch_distance(batch) != NGX_OK) {
        return;
    }

    limit = e->queue_size;
    queued = ngx_acs_engine_queued();

    if (batch->calls == batch->pushes) {
        limit += ngx_max(e->queue_size / 8, NGX_ACS_CALL_RESERVE);
    }

    if (queued + e->reserved + batch->pushes <= limit) {
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
                      queued, e->reserved, batch->pushes);

        batch->state = NGX_ACS_BATCH_EXPIRED;
        ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                             NGX_ACS_RESULT_UNAVAILABLE_QUEUE_FULL);
        ngx_acs_batch_release(batch);
        return;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: delivery admitted: %ui pushes, %ui calls, "
                   "%ui queued", batch->pushes, batch->calls, queued);

    batch->state = NGX_ACS_BATCH_MAKING;

    /* calls first */

    if (batch->calls) {
        ngx_queue_insert_head(&e->making, &batch->link);

    } else {
        ngx_queue_insert_tail(&e->making, &batch->link);
    }

    if (batch->conf->ack == NGX_ACS_ACK_ACCEPTED) {
        /* Event Grid is told now; the jobs go on without the request */
        ngx_acs_batch_answer(batch, NGX_HTTP_ACCEPTED,
                             NGX_ACS_RESULT_ACCEPTED);
    }

    ngx_acs_engine_post();
}


/*
 * A hub that fails, or a lane whose measured rate cannot send the
 * delivery before its deadline: 503 at once (docs/dispatch.md, 5),
 * Event Grid tries later instead of waiting for the deadline
 */

static ngx_int_t
ngx_acs_batch_distance(ngx_acs_batch_t *batch)
{
    time_t                      retry;
    ngx_int_t                   rc;
    ngx_msec_int_t              ms;
    ngx_acs_hub_t              *hub;
    ngx_acs_lane_t             *lane;
    ngx_acs_result_e            result;
    ngx_http_acs_notify_ctx_t  *ctx;

    ms = (ngx_msec_int_t) (batch->delivery.deadline - ngx_current_msec);
    hub = batch->conf->hub;
    lane = hub->lane;
    retry = 0;

    rc = ngx_acs_lane_admit(lane, batch->pushes,
                            batch->calls == batch->pushes,
                            (ngx_msec_t) ngx_max(ms, 0), &retry);

    if (rc == NGX_OK && batch->calls && batch->conf->voip_hub
        && batch->conf->voip_hub->lane != lane)
    {
        hub = batch->conf->voip_hub;
        lane = hub->lane;
        rc = ngx_acs_lane_admit(lane, batch->calls, 1,
                                (ngx_msec_t) ngx_max(ms, 0), &retry);
    }

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    if (rc == NGX_BUSY) {
        ngx_log_error(NGX_LOG_WARN, batch->request->connection->log, 0,
                      "acs_notify: Notification Hubs \"%V\" fails, delivery "
                      "of %ui pushes refused with 503", &hub->name,
                      batch->pushes);
        result = NGX_ACS_RESULT_UNAVAILABLE_HUB;

    } else {
        ngx_log_error(NGX_LOG_WARN, batch->request->connection->log, 0,
                      "acs_notify: Notification Hubs \"%V\" answers %ui "
                      "pushes a second, %ui wait: %ui more cannot be sent "
                      "in the %Mms left, delivery refused with 503",
                      &hub->name, lane->rate, lane->queued, batch->pushes,
                      (ngx_msec_t) ngx_max(ms, 0));
        result = NGX_ACS_RESULT_UNAVAILABLE_BACKLOG;
    }

    ctx = ngx_http_get_module_ctx(batch->request, ngx_http_acs_notify_module);
    ctx->retry_after = retry;

    batch->state = NGX_ACS_BATCH_EXPIRED;
    ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE, result);
    ngx_acs_batch_release(batch);

    return NGX_DECLINED;
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
    ngx_acs_dispatcher_t       *e = &ngx_acs_dispatcher;
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

        call = (item->push.msg.intent == NGX_ACS_INTENT_INCOMING_CALL);

        for ( /* void */ ; item->next < item->to->ndevs; item->next++) {

            dev = &item->to->devs[item->next];

            if (!ngx_acs_item_wants(batch, item, dev, 0)) {
                continue;
            }

            if (*budget == 0) {
                return;
            }

            if (batch->reserved == 0
                && ngx_acs_engine_queued() + e->reserved >= e->queue_size)
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

            job = ngx_acs_engine_job();
            if (job == NULL) {
                batch->failed++;
                continue;
            }

            ngx_acs_dedup_key(job->key, &item->push.msg.id,
                              &item->push.msg.type, &item->push.msg.subject,
                              &item->push.msg.recipient,
                              ngx_acs_device_key(dev));

            rc = e->dedup ? ngx_acs_dedup_claim(e->dedup, job->key,
                                                batch->delivery.owner, log)
                          : NGX_OK;

            if (rc != NGX_OK) {
                ngx_acs_engine_free(job);

                p = ngx_acs_platform(dev->platform);

                if (rc == NGX_BUSY) {
                    batch->busy++;
                    ngx_log_error(NGX_LOG_INFO, log, 0,
                                  "acs_notify: event \"%V\" is being pushed "
                                  "to device \"%V\" by another delivery, "
                                  "skipped", &item->push.log_id,
                                  &dev->device_id);
                    continue;
                }

                if (ctx) {
                    ctx->duplicates++;
                }

                ngx_acs_stats_push(p->id, NGX_ACS_OUT_DUPLICATE);
                ngx_log_error(NGX_LOG_INFO, log, 0,
                              "acs_notify: event \"%V\" already pushed to "
                              "device \"%V\", skipped", &item->push.log_id,
                              &dev->device_id);
                ngx_acs_batch_trace(batch, &item->push.msg.id,
                                    &item->push.msg.type,
                                    &item->push.msg.recipient, dev,
                                    NGX_ACS_TRACE_DUPLICATE,
                                    item->push.age);
                continue;
            }

            job->delivery = &batch->delivery;
            job->event = &item->push;
            job->dev = dev;
            job->call = call;
            job->hub = ngx_acs_batch_hub(batch, dev);

            ngx_queue_insert_tail(&batch->jobs, &job->sibling);
            batch->pending++;

            ngx_acs_engine_queue(job);
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


/*
 * The dispatcher's part of a pass of the engine: deliveries prepared,
 * then made into jobs, each with a budget.  1 when work is left.
 */

static ngx_uint_t
ngx_acs_dispatch_work(void)
{
    ngx_uint_t             budget, more;
    ngx_queue_t           *q, *next;
    ngx_acs_batch_t       *batch;
    ngx_acs_dispatcher_t  *e = &ngx_acs_dispatcher;

    more = 0;
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

    return more;
}


/* a job of a delivery is final: counted; the delivery answered when done */

static void
ngx_acs_dispatch_final(ngx_acs_job_t *job, ngx_acs_final_e final)
{
    ngx_acs_batch_t  *batch;

    batch = (ngx_acs_batch_t *) job->delivery;

    switch (final) {

    case NGX_ACS_FINAL_SENT:
        batch->sent++;
        break;

    case NGX_ACS_FINAL_DROPPED:
        batch->dropped++;
        batch->failed++;
        break;

    case NGX_ACS_FINAL_FAILED:
        batch->failed++;
        break;

    default:
        break;
    }

    ngx_queue_remove(&job->sibling);
    batch->pending--;

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
                                 NGX_ACS_RESULT_UNAVAILABLE_DISPATCH);

        } else {
            ngx_acs_batch_answer(batch, NGX_HTTP_OK,
                                 NGX_ACS_RESULT_DISPATCHED);
        }
    }

    ngx_acs_batch_release(batch);
}


/*
 * The deadline: pushes not started (queued, parked, waiting for a retry,
 * not even made) are not started for this delivery; Event Grid gets 503
 * and delivers again later; transfers running finish on their own.  Call
 * pushes past their ring time expire instead (ngx_acs_engine_drop): when
 * they were all that was left, the answer is 200.
 */

static void
ngx_acs_batch_deadline(ngx_event_t *ev)
{
    ngx_acs_batch_t  *batch;

    batch = (ngx_acs_batch_t *) ((u_char *) ev
                                 - offsetof(ngx_acs_batch_t, timer));

    ngx_acs_batch_expire(batch);

    if (batch->request) {

        if (batch->pending == 0 && batch->failed == 0 && batch->busy == 0) {
            /* what was left were calls past their ring time: final */
            ngx_acs_batch_answer(batch, NGX_HTTP_OK,
                                 NGX_ACS_RESULT_DISPATCHED);

        } else {
            ngx_acs_batch_answer(batch, NGX_HTTP_SERVICE_UNAVAILABLE,
                                 NGX_ACS_RESULT_UNAVAILABLE_DISPATCH);
        }
    }

    ngx_acs_batch_release(batch);
}


static void
ngx_acs_batch_expire(ngx_acs_batch_t *batch)
{
    ngx_uint_t             logged, running, unmade;
    ngx_queue_t           *q, *next;
    ngx_acs_job_t         *job;
    ngx_acs_dispatcher_t  *e = &ngx_acs_dispatcher;

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
    batch->delivery.expired = 1;

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

        switch (ngx_acs_engine_drop(job, logged < NGX_ACS_DROP_LOG)) {

        case NGX_ACS_DROP_RUNNING:
            running++;
            break;

        case NGX_ACS_DROP_LOGGED:
            logged++;
            break;

        default:
            break;
        }
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

    ngx_acs_engine_post();
}


static void
ngx_acs_batch_answer(ngx_acs_batch_t *batch, ngx_uint_t status,
    ngx_acs_result_e result)
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

    if (result != NGX_ACS_RESULT_NONE) {
        ctx->result = result;
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

    ngx_destroy_pool(batch->delivery.pool);
}


static ngx_int_t
ngx_acs_dispatch_answer(ngx_http_request_t *r, ngx_uint_t status,
    ngx_uint_t pushes)
{
    ngx_http_acs_notify_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
    ctx->pushes = pushes;

    if (status == NGX_HTTP_SERVICE_UNAVAILABLE
        && ngx_acs_retry_after(r, ctx->retry_after) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_acs_send(r, status, NULL);
}
