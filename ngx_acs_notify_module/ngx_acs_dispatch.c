
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A delivery becomes a batch of jobs, one per (event, device).  The batch
 * has a pool of its own, so that it outlives the request when Event Grid
 * got its answer first (acs_notify_ack accepted, or a deadline answer) and
 * is freed when its last job is final.
 *
 * Outcomes per job: sent (2xx, remembered for de-duplication), gone (410,
 * the handle is removed from the registry), rejected (400, 401 after one
 * token renewal, 403, 404, 413: logged with NH's TrackingId, not retried),
 * failed (429, 408, 5xx, network and TLS errors retried with exponential
 * backoff and jitter, Retry-After honoured, until the deadline).
 *
 * In "dispatched" mode Event Grid gets 200 when every job is sent, gone or
 * rejected, 503 with Retry-After when one failed or is still retrying at
 * the deadline: Event Grid delivers again and de-duplication skips the
 * devices already reached.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_notify.h"
#include "ngx_acs_json.h"
#include "ngx_acs_event.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_render.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_dedup.h"
#include "ngx_acs_dispatch.h"
#include "ngx_acs_stats.h"


#define NGX_ACS_BACKOFF_BASE     250     /* ms */
#define NGX_ACS_BACKOFF_MAX      5000    /* ms */
#define NGX_ACS_RETRY_AFTER_503  "10"


typedef enum {
    NGX_ACS_JOB_RUNNING = 0,
    NGX_ACS_JOB_WAITING,      /* for its retry timer */
    NGX_ACS_JOB_SENT,
    NGX_ACS_JOB_GONE,
    NGX_ACS_JOB_REJECTED,
    NGX_ACS_JOB_FAILED
} ngx_acs_job_state_e;


typedef struct ngx_acs_batch_s  ngx_acs_batch_t;


typedef struct {
    ngx_acs_batch_t            *batch;
    ngx_acs_hub_t              *hub;
    ngx_acs_push_t              push;
    ngx_str_t                   event_id;
    ngx_str_t                   raw_id;
    ngx_str_t                   handle;
    ngx_uint_t                  platform;
    ngx_msec_t                  attempt_start;
    u_char                      dedup_key[NGX_ACS_DEDUP_KEY_LEN];
    ngx_uint_t                  attempt;
    ngx_uint_t                  renewed;       /* unsigned:1 */
    ngx_acs_job_state_e         state;
    ngx_event_t                 retry;
    ngx_acs_http_t              http;
} ngx_acs_job_t;


struct ngx_acs_batch_s {
    ngx_pool_t                 *pool;
    ngx_http_request_t         *request;       /* NULL once answered */
    ngx_pool_cleanup_t         *cleanup;       /* in the request's pool */
    ngx_acs_job_t              *jobs;
    ngx_uint_t                  njobs;
    ngx_uint_t                  pending;       /* jobs not final */
    ngx_uint_t                  sent;
    ngx_uint_t                  failed;
    ngx_msec_t                  deadline;      /* ngx_current_msec based */
    ngx_msec_t                  received;      /* when the delivery came */
    ngx_event_t                 timer;
    ngx_connection_t            dummy;         /* timer's data, see curl */
    ngx_acs_registry_t         *registry;
    ngx_acs_dedup_t            *dedup;
    ngx_log_t                  *log;
};


static ngx_int_t ngx_acs_dispatch_event(ngx_http_request_t *r,
    ngx_acs_batch_t *batch, ngx_array_t *jobs, ngx_acs_event_t *ev);
static ngx_int_t ngx_acs_job_start(ngx_acs_job_t *job);
static void ngx_acs_job_done(ngx_acs_http_t *h);
static void ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay,
    const char *why);
static void ngx_acs_job_retry_handler(ngx_event_t *ev);
static void ngx_acs_job_final(ngx_acs_job_t *job, ngx_acs_job_state_e state);
static void ngx_acs_batch_deadline(ngx_event_t *ev);
static void ngx_acs_batch_answer(ngx_acs_batch_t *batch);
static void ngx_acs_batch_release(ngx_acs_batch_t *batch);
static void ngx_acs_batch_detach(void *data);
static ngx_int_t ngx_acs_dispatch_answer(ngx_http_request_t *r,
    ngx_uint_t status, ngx_uint_t pushes);
static struct curl_slist *ngx_acs_job_headers(ngx_acs_job_t *job);


static ngx_uint_t  ngx_acs_inflight;     /* jobs not final in this worker */


ngx_int_t
ngx_acs_dispatch_init_process(ngx_cycle_t *cycle, ngx_uint_t connections)
{
    return ngx_acs_curl_init_process(cycle, connections);
}


ngx_int_t
ngx_acs_dispatch(ngx_http_request_t *r, ngx_array_t *events)
{
    ngx_int_t                         rc;
    ngx_uint_t                        i, n;
    ngx_pool_t                       *pool;
    ngx_array_t                       jobs;
    ngx_acs_job_t                    *job;
    ngx_acs_batch_t                  *batch;
    ngx_acs_event_t                  *ev;
    ngx_pool_cleanup_t               *cln;
    ngx_http_acs_notify_ctx_t        *ctx;
    ngx_http_acs_notify_loc_conf_t   *ancf;
    ngx_http_acs_notify_main_conf_t  *amcf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);
    amcf = ngx_http_get_module_main_conf(r, ngx_http_acs_notify_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    if (ngx_exiting) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "acs_notify: worker shutting down, delivery refused "
                      "with 503");
        ngx_str_set(&ctx->result, "unavailable:shutdown");
        return ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE, 0);
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    batch = ngx_pcalloc(pool, sizeof(ngx_acs_batch_t));
    if (batch == NULL
        || ngx_array_init(&jobs, pool, 4, sizeof(ngx_acs_job_t)) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    batch->pool = pool;
    batch->registry = amcf->registry;
    batch->dedup = amcf->dedup;
    batch->log = ngx_cycle->log;
    batch->deadline = ngx_current_msec + ancf->dispatch_timeout;
    batch->received = r->start_msec;

    ev = events->elts;

    for (i = 0; i < events->nelts; i++) {
        rc = ngx_acs_dispatch_event(r, batch, &jobs, &ev[i]);

        if (rc == NGX_DECLINED) {
            /* the registry failed (logged at crit): Event Grid retries */
            ngx_destroy_pool(pool);
            ngx_str_set(&ctx->result, "unavailable:registry");
            return ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           0);
        }

        if (rc != NGX_OK) {
            ngx_destroy_pool(pool);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (jobs.nelts == 0) {
        ngx_destroy_pool(pool);
        ngx_str_set(&ctx->result, "dispatched");
        return ngx_acs_dispatch_answer(r, NGX_HTTP_OK, 0);
    }

    /*
     * back-pressure: all of the batch, or none of it; a batch larger than
     * the whole queue goes alone, so that it can succeed at all
     */

    if (ngx_acs_inflight && ngx_acs_inflight + jobs.nelts > amcf->queue_size)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "acs_notify: queue full (%ui pushes in flight, %ui "
                      "more asked), delivery refused with 503",
                      ngx_acs_inflight, jobs.nelts);
        ngx_destroy_pool(pool);
        ngx_str_set(&ctx->result, "unavailable:queue_full");
        return ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE, 0);
    }

    batch->jobs = jobs.elts;
    batch->njobs = jobs.nelts;
    ngx_acs_inflight += jobs.nelts;
    ngx_acs_stats_queue(jobs.nelts);

    /* one more, held while the jobs start: none may free the batch yet */
    batch->pending = jobs.nelts + 1;

    batch->dummy.fd = (ngx_socket_t) -1;
    batch->timer.data = &batch->dummy;
    batch->timer.handler = ngx_acs_batch_deadline;
    batch->timer.log = batch->log;

    /* every job is started now, so that none is started after an answer */

    for (i = 0; i < batch->njobs; i++) {
        job = &batch->jobs[i];
        job->batch = batch;

        job->retry.data = &batch->dummy;
        job->retry.handler = ngx_acs_job_retry_handler;
        job->retry.log = batch->log;

        if (ngx_acs_job_start(job) != NGX_OK) {
            ngx_acs_job_retry(job, NGX_ACS_BACKOFF_BASE, "not started");
        }
    }

    if (--batch->pending == 0) {
        /* every job is final already (a deadline shorter than a backoff) */
        if (batch->failed) {
            ngx_str_set(&ctx->result, "unavailable:dispatch");
            i = NGX_HTTP_SERVICE_UNAVAILABLE;

        } else {
            ngx_str_set(&ctx->result, "dispatched");
            i = NGX_HTTP_OK;
        }

        n = batch->sent;
        ngx_acs_batch_release(batch);
        return ngx_acs_dispatch_answer(r, i, n);
    }

    if (ancf->ack == NGX_ACS_ACK_ACCEPTED) {
        /* Event Grid is told now; the jobs go on without the request */
        ngx_str_set(&ctx->result, "accepted");
        return ngx_acs_dispatch_answer(r, NGX_HTTP_ACCEPTED, 0);
    }

    /* the request waits for the jobs, at most until the deadline */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_acs_batch_release(batch);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_acs_batch_detach;
    cln->data = batch;

    batch->request = r;
    batch->cleanup = cln;

    ngx_add_timer(&batch->timer, ancf->dispatch_timeout);

    return NGX_DONE;
}


/* the jobs of one event: route, look up, de-duplicate, render */

static ngx_int_t
ngx_acs_dispatch_event(ngx_http_request_t *r, ngx_acs_batch_t *batch,
    ngx_array_t *jobs, ngx_acs_event_t *ev)
{
    u_char                           key[NGX_ACS_DEDUP_KEY_LEN];
    ngx_int_t                        rc;
    ngx_str_t                        event_id, raw_id, *id;
    ngx_uint_t                       i, has_voip;
    ngx_array_t                      devices;
    ngx_acs_job_t                   *job;
    ngx_acs_push_t                   push;
    ngx_acs_route_t                  route;
    ngx_acs_device_t                *dev;
    ngx_http_acs_notify_ctx_t       *ctx;
    ngx_http_acs_notify_loc_conf_t  *ancf;

    ancf = ngx_http_get_module_loc_conf(r, ngx_http_acs_notify_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);

    /* the sender's id as the logs show it: escaped */
    id = ngx_acs_log_str(batch->pool, &ev->id);

    rc = ngx_acs_route(batch->pool, ev, &route);

    if (rc == NGX_DECLINED) {
        ctx->ignored++;
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "acs_notify: event \"%V\" of type \"%V\" ignored",
                       id, ngx_acs_log_str(batch->pool, &ev->type));
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        ctx->ignored++;
        ngx_log_error(ancf->log_level, r->connection->log, 0,
                      "acs_notify: event \"%V\" of type \"%V\" has no "
                      "recipient, no push", id,
                      ngx_acs_log_str(batch->pool, &ev->type));
        return NGX_OK;
    }

    if (ngx_array_init(&devices, batch->pool, 4, sizeof(ngx_acs_device_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_acs_registry_list(batch->registry, &route.recipient, batch->pool,
                              r->connection->log, &devices)
        != NGX_OK)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "acs_notify: event \"%V\" for \"%V\": %ui devices",
                   id, ngx_acs_log_str(batch->pool, &route.recipient),
                   devices.nelts);

    dev = devices.elts;
    has_voip = 0;
    ngx_str_null(&event_id);
    ngx_str_null(&raw_id);

    for (i = 0; i < devices.nelts; i++) {
        if (dev[i].platform == NGX_ACS_PLATFORM_APNS_VOIP) {
            has_voip = 1;
        }
    }

    for (i = 0; i < devices.nelts; i++) {

        /* a call rings through PushKit where the user has it, not twice */

        if (route.intent == NGX_ACS_INTENT_INCOMING_CALL && has_voip
            && dev[i].platform == NGX_ACS_PLATFORM_APNS)
        {
            continue;
        }

        ngx_acs_dedup_key(key, &ev->id, &ev->type, &ev->subject,
                          &route.recipient, &dev[i].handle);

        if (batch->dedup && ngx_acs_dedup_seen(batch->dedup, key) == NGX_OK)
        {
            ctx->duplicates++;
            ngx_acs_stats_push(dev[i].platform, NGX_ACS_OUT_DUPLICATE);
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "acs_notify: event \"%V\" already pushed to device "
                          "\"%V\", skipped", id, &dev[i].device_id);
            continue;
        }

        rc = ngx_acs_render(batch->pool, &ancf->render, ev, &route, &dev[i],
                            &push);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {
            /* VoIP devices get nothing but calls, by design; else: why */

            if (dev[i].platform != NGX_ACS_PLATFORM_APNS_VOIP
                || route.intent == NGX_ACS_INTENT_INCOMING_CALL)
            {
                ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                              "acs_notify: no push of event \"%V\" for "
                              "device \"%V\" (%V): the payload does not fit "
                              "the platform's limit or the registration "
                              "lacks its keys", id, &dev[i].device_id,
                              ngx_acs_platform_name(dev[i].platform));
            }

            continue;
        }

        if (event_id.data == NULL) {

            /*
             * the event and, mostly, the recipient's id are in the
             * request's memory, and jobs outlive the request (an
             * "accepted" answer, a deadline): they keep copies (of the
             * event id, only for logs, the escaped one)
             */

            event_id = *id;
            raw_id.data = ngx_pstrdup(batch->pool, &route.recipient);

            if (raw_id.data == NULL) {
                return NGX_ERROR;
            }

            raw_id.len = route.recipient.len;
        }

        job = ngx_array_push(jobs);
        if (job == NULL) {
            return NGX_ERROR;
        }

        ngx_memzero(job, sizeof(ngx_acs_job_t));

        job->push = push;
        job->hub = (push.voip && ancf->voip_hub) ? ancf->voip_hub : ancf->hub;
        job->event_id = event_id;
        job->raw_id = raw_id;
        job->handle = dev[i].handle;
        job->platform = dev[i].platform;
        ngx_memcpy(job->dedup_key, key, NGX_ACS_DEDUP_KEY_LEN);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_job_start(ngx_acs_job_t *job)
{
    ngx_acs_hub_t   *hub;
    ngx_acs_http_t  *h;

    hub = job->hub;
    h = &job->http;

    h->headers = ngx_acs_job_headers(job);
    if (h->headers == NULL) {
        return NGX_ERROR;
    }

    h->url = (const char *) hub->url.data;
    h->body = job->push.body.data;
    h->body_len = job->push.body.len;
    h->ca_file = hub->ca_file.len ? (const char *) hub->ca_file.data : NULL;
    h->connect_to = hub->connect_to_list;
    h->max_connections = hub->max_connections;
    h->timeout = hub->timeout;
    h->handler = ngx_acs_job_done;
    h->data = job;

    job->state = NGX_ACS_JOB_RUNNING;
    job->attempt++;
    job->attempt_start = ngx_current_msec;

    if (ngx_acs_curl_submit(h, job->batch->log) != NGX_OK) {
        curl_slist_free_all(h->headers);
        h->headers = NULL;
        return NGX_ERROR;
    }

    ngx_acs_stats_in_flight(1);

    return NGX_OK;
}


static struct curl_slist *
ngx_acs_job_headers(ngx_acs_job_t *job)
{
    u_char              *p, line[8192];
    ngx_str_t            token;
    ngx_uint_t           i;
    ngx_acs_push_t      *push;
    struct curl_slist   *list, *next;

    push = &job->push;
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
    ngx_acs_add("Content-Type: %V", &push->content_type);
    ngx_acs_add("ServiceBusNotification-Format: %V", &push->format);
    ngx_acs_add("ServiceBusNotification-DeviceHandle: %V", &job->handle);
    ngx_acs_add("x-ms-version: %V", &job->hub->api_version);

    for (i = 0; i < push->nheaders; i++) {
        ngx_acs_add("%V: %V", &push->headers[i].name,
                    &push->headers[i].value);
    }

    /* no "Expect: 100-continue" round trip */
    ngx_acs_add("%s", "Expect:");

#undef ngx_acs_add

    return list;
}


static void
ngx_acs_job_done(ngx_acs_http_t *h)
{
    ngx_acs_job_t  *job = h->data;

    long        status;
    ngx_str_t   tracking, detail;
    ngx_log_t  *log;

    log = job->batch->log;
    status = h->status;

    ngx_acs_stats_in_flight(-1);
    ngx_acs_stats_hub_answer(job->hub->index,
                             (status >= 200) ? status : 0,
                             ngx_current_msec - job->attempt_start);

    tracking.data = h->tracking_id;
    tracking.len = h->tracking_id_len;
    detail.data = h->detail;
    detail.len = h->detail_len;

    /*
     * A transfer error after a final status (an HTTP/2 peer may answer
     * before it read the body, then reset the stream with NO_ERROR, and
     * libcurl reports CURLE_HTTP2_STREAM): the hub decided, the status
     * says what; retrying would push twice.
     */

    if (h->result != CURLE_OK && status < 200) {
        ngx_acs_job_retry(job, 0, h->error[0] ? h->error
                                  : curl_easy_strerror(h->result));
        return;
    }

    if (status >= 200 && status < 300) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify: push of \"%V\" to %*s... sent",
                       &job->event_id, ngx_min(job->handle.len, 8),
                       job->handle.data);

        if (job->batch->dedup) {
            ngx_acs_dedup_add(job->batch->dedup, job->dedup_key, log);
        }

        ngx_acs_job_final(job, NGX_ACS_JOB_SENT);
        return;
    }

    switch (status) {

    case 410:
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "acs_notify: Notification Hubs reports device handle "
                      "%*s... of \"%V\" gone, removed",
                      ngx_min(job->handle.len, 8), job->handle.data,
                      ngx_acs_log_str(job->batch->pool, &job->raw_id));

        (void) ngx_acs_registry_remove_handle(job->batch->registry,
                                              &job->raw_id, &job->handle,
                                              log);

        ngx_acs_job_final(job, NGX_ACS_JOB_GONE);
        return;

    case 401:
        if (!job->renewed) {
            /* a token the hub no longer takes: sign a new one, once */
            job->renewed = 1;
            ngx_acs_hub_token_reset(job->hub);
            ngx_acs_job_retry(job, 0, NULL);
            return;
        }

        break;

    case 403:
        if (h->retry_after) {
            /* the quota answer of older API versions */
            ngx_acs_job_retry(job, h->retry_after * 1000, "HTTP 403 quota");
            return;
        }

        break;

    case 429:
        ngx_acs_job_retry(job, h->retry_after * 1000, "HTTP 429 throttled");
        return;

    case 408:
        ngx_acs_job_retry(job, 0, "HTTP 408");
        return;

    default:
        if (status >= 500) {
            ngx_snprintf((u_char *) h->error, CURL_ERROR_SIZE - 1,
                         "HTTP %l%Z", status);
            ngx_acs_job_retry(job, 0, h->error);
            return;
        }
    }

    /* 400, 401, 403, 404, 413 and other answers: never better on retry */

    while (detail.len && (detail.data[detail.len - 1] == '\n'
                          || detail.data[detail.len - 1] == '\r'))
    {
        detail.len--;
    }

    ngx_log_error(NGX_LOG_ERR, log, 0,
                  "acs_notify: Notification Hubs \"%V\" rejected the push of "
                  "event \"%V\" to %*s...: %l, TrackingId: %V%s%V",
                  &job->hub->name, &job->event_id,
                  ngx_min(job->handle.len, 8), job->handle.data, status,
                  &tracking, detail.len ? ", " : "", &detail);

    ngx_acs_job_final(job, NGX_ACS_JOB_REJECTED);
}


/*
 * Again after delay (or an exponential backoff with jitter when 0), if
 * that is before the deadline; the job fails otherwise.
 */

static void
ngx_acs_job_retry(ngx_acs_job_t *job, ngx_msec_t delay, const char *why)
{
    ngx_msec_t        backoff;
    ngx_acs_batch_t  *batch;

    batch = job->batch;

    if (delay == 0 && why != NULL) {
        backoff = NGX_ACS_BACKOFF_BASE << ngx_min(job->attempt - 1, 5);
        backoff = ngx_min(backoff, NGX_ACS_BACKOFF_MAX);
        delay = backoff / 2 + (ngx_msec_t) ngx_random() % backoff;
    }

    if ((ngx_msec_int_t) (batch->deadline - ngx_current_msec - delay) <= 0) {
        ngx_log_error(NGX_LOG_ERR, batch->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... through "
                      "\"%V\" failed after %ui attempts: %s",
                      &job->event_id, ngx_min(job->handle.len, 8),
                      job->handle.data, &job->hub->name, job->attempt,
                      why ? why : "401");
        ngx_acs_job_final(job, NGX_ACS_JOB_FAILED);
        return;
    }

    ngx_acs_stats_retry();

    if (why) {
        ngx_log_error(NGX_LOG_INFO, batch->log, 0,
                      "acs_notify: push of event \"%V\" to %*s... will be "
                      "retried in %Mms: %s", &job->event_id,
                      ngx_min(job->handle.len, 8), job->handle.data, delay,
                      why);
    }

    job->state = NGX_ACS_JOB_WAITING;
    ngx_add_timer(&job->retry, delay);
}


static void
ngx_acs_job_retry_handler(ngx_event_t *ev)
{
    ngx_uint_t        i;
    ngx_acs_job_t    *job;
    ngx_acs_batch_t  *batch;
    ngx_connection_t *dummy;

    /* the job whose timer this is */

    dummy = ev->data;
    batch = (ngx_acs_batch_t *) ((u_char *) dummy
                                 - offsetof(ngx_acs_batch_t, dummy));
    job = NULL;

    for (i = 0; i < batch->njobs; i++) {
        if (&batch->jobs[i].retry == ev) {
            job = &batch->jobs[i];
            break;
        }
    }

    if (job == NULL || job->state != NGX_ACS_JOB_WAITING) {
        return;
    }

    if (ngx_acs_job_start(job) != NGX_OK) {
        ngx_acs_job_retry(job, NGX_ACS_BACKOFF_BASE, "not started");
    }
}


static void
ngx_acs_job_final(ngx_acs_job_t *job, ngx_acs_job_state_e state)
{
    ngx_acs_batch_t  *batch;

    batch = job->batch;

    job->state = state;
    batch->pending--;
    ngx_acs_inflight--;
    ngx_acs_stats_queue(-1);

    ngx_acs_stats_push(job->platform,
                       (state == NGX_ACS_JOB_SENT) ? NGX_ACS_OUT_SENT
                       : (state == NGX_ACS_JOB_GONE) ? NGX_ACS_OUT_GONE
                       : (state == NGX_ACS_JOB_REJECTED) ? NGX_ACS_OUT_REJECTED
                       : NGX_ACS_OUT_FAILED);

    if (state == NGX_ACS_JOB_SENT) {
        ngx_acs_stats_delivery_time(ngx_current_msec - batch->received);
        batch->sent++;

    } else if (state == NGX_ACS_JOB_FAILED) {
        batch->failed++;
    }

    if (batch->pending) {
        return;
    }

    if (batch->request) {
        ngx_acs_batch_answer(batch);
    }

    ngx_acs_batch_release(batch);
}


/*
 * The deadline: jobs waiting for a retry give up, Event Grid gets 503 and
 * delivers again later; requests in flight finish on their own.
 */

static void
ngx_acs_batch_deadline(ngx_event_t *ev)
{
    ngx_uint_t        i;
    ngx_acs_job_t    *job;
    ngx_acs_batch_t  *batch;

    batch = (ngx_acs_batch_t *) ((u_char *) ev
                                 - offsetof(ngx_acs_batch_t, timer));

    ngx_log_error(NGX_LOG_WARN, batch->log, 0,
                  "acs_notify: %ui of %ui pushes not final at the dispatch "
                  "deadline", batch->pending, batch->njobs);

    /* keep the batch while its own jobs end */
    batch->pending++;

    for (i = 0; i < batch->njobs; i++) {
        job = &batch->jobs[i];

        if (job->state == NGX_ACS_JOB_WAITING) {
            ngx_del_timer(&job->retry);
            ngx_acs_job_final(job, NGX_ACS_JOB_FAILED);
        }
    }

    batch->pending--;

    if (batch->request) {
        batch->failed++;
        ngx_acs_batch_answer(batch);
    }

    if (batch->pending == 0) {
        ngx_acs_batch_release(batch);
    }
}


static void
ngx_acs_batch_answer(ngx_acs_batch_t *batch)
{
    ngx_int_t                   rc;
    ngx_connection_t           *c;
    ngx_http_request_t         *r;
    ngx_http_acs_notify_ctx_t  *ctx;

    r = batch->request;
    batch->request = NULL;

    /* the request's pool must not call back into a batch that may be gone */
    batch->cleanup->handler = NULL;

    if (batch->timer.timer_set) {
        ngx_del_timer(&batch->timer);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_acs_notify_module);
    c = r->connection;

    if (batch->failed) {
        ngx_str_set(&ctx->result, "unavailable:dispatch");
        rc = ngx_acs_dispatch_answer(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     batch->sent);
    } else {
        ngx_str_set(&ctx->result, "dispatched");
        rc = ngx_acs_dispatch_answer(r, NGX_HTTP_OK, batch->sent);
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_acs_batch_release(ngx_acs_batch_t *batch)
{
    if (batch->pending || batch->request) {
        return;
    }

    if (batch->timer.timer_set) {
        ngx_del_timer(&batch->timer);
    }

    ngx_destroy_pool(batch->pool);
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

    if (batch->timer.timer_set) {
        ngx_del_timer(&batch->timer);
    }

    if (batch->pending == 0) {
        ngx_acs_batch_release(batch);
    }
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
