
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A delivery's events, prepared (docs/dispatch.md, sections 5 and 9):
 * each is routed (ngx_acs_route.c); one too old to push (a call older than
 * acs_notify_call_ttl, another older than acs_notify_max_age) is stale:
 * counted, logged, traced, not pushed; a call's ring end is kept for the
 * engine; the recipient is looked up in the device store once per
 * delivery; the message is made once per event; the pushes are counted.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_http.h"
#include "ngx_acs_json.h"
#include "ngx_acs_time.h"
#include "ngx_acs_route.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_template.h"
#include "ngx_acs_stats.h"
#include "ngx_acs_batch.h"


#define NGX_ACS_TIME_SKEW        300000   /* ms: a time in the future this
                                             much is taken for now */


static ngx_int_t ngx_acs_batch_age(ngx_acs_batch_t *batch,
    ngx_acs_event_t *ev, ngx_acs_route_t *route, ngx_str_t *id,
    ngx_acs_event_push_t *push);
static ngx_acs_recipient_t *ngx_acs_batch_recipient(ngx_acs_batch_t *batch,
    ngx_str_t *raw_id);


/* an event: route, recipient, message; its pushes counted */

ngx_int_t
ngx_acs_batch_item(ngx_acs_batch_t *batch, ngx_acs_event_t *ev,
    ngx_acs_item_t *item)
{
    ngx_int_t                   rc;
    ngx_log_t                  *log;
    ngx_str_t                  *id;
    ngx_uint_t                  i, n, calls;
    ngx_pool_t                 *pool;
    ngx_acs_route_t             route;
    ngx_acs_recipient_t        *to;
    ngx_http_acs_notify_ctx_t  *ctx;

    log = batch->request->connection->log;
    ctx = ngx_http_get_module_ctx(batch->request, ngx_http_acs_notify_module);
    pool = batch->delivery.pool;

    /* the sender's strings as the logs show them: escaped */
    id = ngx_acs_log_str(pool, &ev->id);

    rc = ngx_acs_route(pool, ev, &route);

    if (rc == NGX_DECLINED) {
        /* the router's debug line says why */
        ctx->ignored++;
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        ctx->ignored++;
        ngx_log_error(batch->conf->log_level, log, 0,
                      "acs_notify: event \"%V\" of type \"%V\" has no "
                      "recipient, no push", id,
                      ngx_acs_log_str(pool, &ev->type));
        return NGX_OK;
    }

    if (ngx_acs_batch_age(batch, ev, &route, id, &item->push) != NGX_OK) {
        /* too old to push: logged */
        ctx->stale++;
        return NGX_OK;
    }

    to = ngx_acs_batch_recipient(batch, &route.recipient);
    if (to == NULL) {
        return NGX_DECLINED;
    }

    item->push.msg.intent = route.intent;
    item->push.log_id = *id;
    item->to = to;

    n = 0;

    for (i = 0; i < to->ndevs; i++) {
        n += ngx_acs_item_wants(batch, item, &to->devs[i], 1);
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: event \"%V\" for \"%V\": %ui devices, %ui "
                   "pushes", id, ngx_acs_log_str(pool, &route.recipient),
                   to->ndevs, n);

    if (n == 0) {
        item->to = NULL;
        return NGX_OK;
    }

    if (ngx_acs_message(pool, ev, &route, batch->conf->render.preview,
                        ngx_acs_template_find(batch->conf->render.templates,
                                              route.rule, NULL)
                        != NULL,
                        &item->push.msg)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the message's copies outlive the request: the logs take those */

    item->push.log_id = *ngx_acs_log_str(pool, &item->push.msg.id);
    item->push.log_to = *ngx_acs_log_str(pool, &item->push.msg.recipient);

    calls = (route.intent == NGX_ACS_INTENT_INCOMING_CALL) ? n : 0;

    batch->pushes += n;
    batch->calls += calls;

    return NGX_OK;
}


/*
 * The event's age on arrival, from its time (eventTime, CloudEvents time),
 * a time up to NGX_ACS_TIME_SKEW in the future taken for now: NGX_DECLINED
 * when it is older than its limit (acs_notify_call_ttl for a call,
 * acs_notify_max_age for another), so stale: counted and logged.  A call
 * to push gets its ring end, counted from its time, or from its arrival
 * when its time cannot be read (it is pushed then, as any such event).
 */

static ngx_int_t
ngx_acs_batch_age(ngx_acs_batch_t *batch, ngx_acs_event_t *ev,
    ngx_acs_route_t *route, ngx_str_t *id, ngx_acs_event_push_t *push)
{
    char        *why;
    int64_t      t, age;
    ngx_log_t   *log;
    ngx_msec_t   limit;
    ngx_uint_t   call;
    ngx_time_t  *tp;

    log = batch->request->connection->log;
    call = (route->intent == NGX_ACS_INTENT_INCOMING_CALL);
    limit = call ? batch->conf->call_ttl : batch->conf->max_age;

    push->age = NGX_ACS_AGE_UNKNOWN;
    push->expires = 0;

    tp = ngx_timeofday();
    age = 0;
    why = NULL;

    if (ngx_acs_event_time(&ev->time, &t) != NGX_OK) {
        why = "no readable";

    } else {
        age = ((int64_t) tp->sec * 1000 + tp->msec) - t;

        if (age < -NGX_ACS_TIME_SKEW) {
            why = "a future";
        }
    }

    if (why) {

        if (limit) {
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "acs_notify: event \"%V\" has %s time \"%V\": "
                          "its age is not known, it is pushed", id, why,
                          ngx_acs_log_str(batch->delivery.pool, &ev->time));
        }

        if (call && limit) {
            push->expires = batch->delivery.received + limit;
        }

        return NGX_OK;
    }

    age = ngx_max(age, 0);
    age = ngx_min(age, NGX_MAX_INT32_VALUE);
    push->age = (ngx_msec_t) age;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: event \"%V\" is %Mms old, limit %Mms", id,
                   push->age, limit);

    if (limit && push->age > limit) {
        batch->stale++;
        ngx_acs_stats_stale(call);

        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "acs_notify: event \"%V\" (%V) is %M.%03Ms old, over "
                      "%s %M.%03Ms: not pushed (stale)", id,
                      ngx_acs_log_str(batch->delivery.pool, &ev->type),
                      push->age / 1000, push->age % 1000,
                      call ? "acs_notify_call_ttl" : "acs_notify_max_age",
                      limit / 1000, limit % 1000);

        ngx_acs_batch_trace(batch, &ev->id, &ev->type, &route->recipient,
                            NULL, NGX_ACS_TRACE_STALE, push->age);

        return NGX_DECLINED;
    }

    if (call && limit) {
        push->expires = ngx_current_msec + (limit - push->age);
    }

    return NGX_OK;
}


/* an outcome decided here, before any job: a stale event, a duplicate */

void
ngx_acs_batch_trace(ngx_acs_batch_t *batch, ngx_str_t *id, ngx_str_t *type,
    ngx_str_t *user, ngx_acs_device_t *dev, ngx_acs_trace_outcome_e outcome,
    ngx_msec_t age)
{
    ngx_acs_hub_t         *hub;
    ngx_acs_trace_push_t   tp;

    if (!ngx_acs_trace_on()) {
        return;
    }

    ngx_memzero(&tp, sizeof(ngx_acs_trace_push_t));

    tp.event_id = *id;
    tp.type = *type;
    tp.user = *user;
    tp.outcome = outcome;
    tp.age = (age == NGX_ACS_AGE_UNKNOWN) ? NGX_ACS_TRACE_NONE : age;
    tp.queued = ngx_current_msec - batch->delivery.received;

    if (dev) {
        hub = ngx_acs_batch_hub(batch, dev);

        tp.device = dev->device_id;
        tp.handle = dev->handle;
        tp.target = dev->target;
        tp.platform = dev->platform;
        tp.hub = hub->name;
    }

    ngx_acs_trace_add(&tp);
}


/* the hub of a device's pushes: a VoIP platform's the VoIP hub, if any */

ngx_acs_hub_t *
ngx_acs_batch_hub(ngx_acs_batch_t *batch, ngx_acs_device_t *dev)
{
    if (ngx_acs_platform(dev->platform)->voip == NGX_ACS_VOIP_ONLY
        && batch->conf->voip_hub)
    {
        return batch->conf->voip_hub;
    }

    return batch->conf->hub;
}


/*
 * Whether the device gets a push of the event: VoIP devices get calls
 * only (iOS allows nothing else), an apns device of a user who has a VoIP
 * device gets no call (it rings there, not twice), a web push needs its
 * keys (Notification Hubs refuses it without; logged once, when counted).
 */

ngx_uint_t
ngx_acs_item_wants(ngx_acs_batch_t *batch, ngx_acs_item_t *item,
    ngx_acs_device_t *dev, ngx_uint_t log)
{
    ngx_uint_t           call;
    ngx_acs_platform_t  *p;

    p = ngx_acs_platform(dev->platform);
    call = (item->push.msg.intent == NGX_ACS_INTENT_INCOMING_CALL);

    switch (p->voip) {

    case NGX_ACS_VOIP_ONLY:
        if (!call) {
            return 0;
        }

        break;

    case NGX_ACS_VOIP_YIELDS:
        if (call && item->to->has_voip) {
            return 0;
        }

        break;

    case NGX_ACS_VOIP_NONE:
        break;
    }

    if (ngx_acs_device_lacks_keys(dev, p)) {

        if (log) {
            ngx_log_error(NGX_LOG_WARN, batch->request->connection->log, 0,
                          "acs_notify: no push of event \"%V\" for device "
                          "\"%V\" (%V): the registration lacks its keys",
                          &item->push.log_id, &dev->device_id, &p->name);
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

    to = ngx_pcalloc(batch->delivery.pool, sizeof(ngx_acs_recipient_t));
    if (to == NULL) {
        return NULL;
    }

    if (ngx_array_init(&devices, batch->delivery.pool, 4,
                       sizeof(ngx_acs_device_t))
        != NGX_OK)
    {
        return NULL;
    }

    if (ngx_acs_store_targets(batch->store, raw_id,
                              batch->delivery.pool,
                              batch->request->connection->log, &devices)
        != NGX_OK)
    {
        return NULL;
    }

    to->raw_id = *raw_id;
    to->devs = devices.elts;
    to->ndevs = devices.nelts;

    for (i = 0; i < to->ndevs; i++) {
        if (ngx_acs_platform(to->devs[i].platform)->voip == NGX_ACS_VOIP_ONLY)
        {
            to->has_voip = 1;
        }
    }

    to->node.key = hash;
    ngx_rbtree_insert(&batch->recipients, &to->node);

    return to;
}
