
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A delivery as the dispatcher's two files share it: ngx_acs_dispatch.c
 * (admission, jobs, deadline, answers) and ngx_acs_prepare.c (its events
 * routed, their age, their recipients, which device takes which push).
 */


#ifndef _NGX_ACS_BATCH_H_INCLUDED_
#define _NGX_ACS_BATCH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_acs_notify.h"
#include "ngx_acs_event.h"
#include "ngx_acs_store.h"
#include "ngx_acs_engine.h"
#include "ngx_acs_trace.h"


typedef enum {
    NGX_ACS_BATCH_PREPARING = 0,
    NGX_ACS_BATCH_MAKING,
    NGX_ACS_BATCH_MADE,
    NGX_ACS_BATCH_EXPIRED
} ngx_acs_batch_state_e;


/* a recipient of a delivery and its devices, looked up once */

typedef struct {
    ngx_rbtree_node_t           node;          /* key: hash of the raw id */
    ngx_str_t                   raw_id;
    ngx_acs_device_t           *devs;
    ngx_uint_t                  ndevs;
    ngx_uint_t                  has_voip;      /* unsigned:1 */
} ngx_acs_recipient_t;


/* an event of a delivery */

typedef struct {
    ngx_acs_event_push_t        push;          /* message, payloads */
    ngx_acs_recipient_t        *to;            /* NULL: no push */
    ngx_uint_t                  next;          /* the next device to make */
} ngx_acs_item_t;


typedef struct {
    ngx_acs_delivery_t          delivery;      /* what the jobs see */

    ngx_http_request_t         *request;       /* NULL once answered */
    ngx_pool_cleanup_t         *cleanup;       /* in the request's pool */
    ngx_array_t                *events;        /* the request's */
    ngx_http_acs_notify_loc_conf_t  *conf;
    ngx_acs_store_t            *store;

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
    ngx_uint_t                  stale;         /* events too old to push */

    ngx_int_t                  *sync;          /* the answer, when given
                                                  inside ngx_acs_dispatch */
    ngx_event_t                 timer;         /* the deadline */
    ngx_connection_t            dummy;
} ngx_acs_batch_t;

/*
 * An event of the delivery: routed, its age checked (a stale one is
 * counted, logged and traced), its recipient looked up, its message made,
 * its pushes counted.  NGX_OK (item->to NULL: no push), NGX_DECLINED (the
 * store failed, logged), NGX_ERROR.
 */
ngx_int_t ngx_acs_batch_item(ngx_acs_batch_t *batch, ngx_acs_event_t *ev,
    ngx_acs_item_t *item);

/* whether the device takes a push of the item; log: say why not, once */
ngx_uint_t ngx_acs_item_wants(ngx_acs_batch_t *batch, ngx_acs_item_t *item,
    ngx_acs_device_t *dev, ngx_uint_t log);

/* the hub of a device's pushes */
ngx_acs_hub_t *ngx_acs_batch_hub(ngx_acs_batch_t *batch,
    ngx_acs_device_t *dev);

/* an outcome decided before any job: a stale event, a duplicate */
void ngx_acs_batch_trace(ngx_acs_batch_t *batch, ngx_str_t *id,
    ngx_str_t *type, ngx_str_t *user, ngx_acs_device_t *dev,
    ngx_acs_trace_outcome_e outcome, ngx_msec_t age);


#endif /* _NGX_ACS_BATCH_H_INCLUDED_ */
