
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The push engine of a worker: jobs (one push each) queued per lane in
 * front of libcurl, started within bounds, their outcomes, retries and
 * gone handles.  The deliveries the jobs belong to are the dispatcher's
 * (ngx_acs_dispatch.c): it makes the jobs, and learns when each is final.
 */


#ifndef _NGX_ACS_ENGINE_H_INCLUDED_
#define _NGX_ACS_ENGINE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_platform.h"
#include "ngx_acs_route.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_hub.h"
#include "ngx_acs_dedup.h"


typedef enum {
    NGX_ACS_FINAL_SENT = 0,
    NGX_ACS_FINAL_GONE,
    NGX_ACS_FINAL_REJECTED,
    NGX_ACS_FINAL_FAILED,
    NGX_ACS_FINAL_DROPPED,     /* not started by the deadline */
    NGX_ACS_FINAL_SKIPPED,     /* no payload fits the device */
    NGX_ACS_FINAL_EXPIRED,     /* a call's ring time ran out first */
    NGX_ACS_FINALS
} ngx_acs_final_e;


/* what the jobs of a delivery share with the engine */

typedef struct {
    ngx_pool_t                 *pool;          /* payloads are kept in it */
    ngx_array_t                *templates;     /* acs_notify_template */
    uint64_t                    owner;         /* of its dedup claims */
    ngx_msec_t                  deadline;
    ngx_msec_t                  received;
    ngx_uint_t                  expired;       /* unsigned:1, no retries */
} ngx_acs_delivery_t;


/* an event, and what its pushes share: its message and its payloads */

typedef struct {
    ngx_acs_msg_t               msg;
    ngx_str_t                   log_id;        /* msg.id and msg.recipient */
    ngx_str_t                   log_to;        /* as logs show them */
    ngx_str_t                   body[NGX_ACS_PLATFORMS];
    u_char                      state[NGX_ACS_PLATFORMS];
    time_t                      ttl[NGX_ACS_PLATFORMS];   /* of a body */
    ngx_msec_t                  expires;       /* a call's ring end (on
                                                  ngx_current_msec), 0:
                                                  none */
    ngx_msec_t                  age;           /* on arrival, or
                                                  NGX_ACS_AGE_UNKNOWN */
} ngx_acs_event_push_t;

#define NGX_ACS_AGE_UNKNOWN  ((ngx_msec_t) -1)


typedef struct ngx_acs_job_s  ngx_acs_job_t;

struct ngx_acs_job_s {
    union {
        ngx_queue_t             queue;         /* queued, parked */
        ngx_rbtree_node_t       timer;         /* waiting: when */
    } u;
    ngx_queue_t                 sibling;       /* the dispatcher's */
    ngx_acs_delivery_t         *delivery;
    ngx_acs_event_push_t       *event;
    ngx_acs_device_t           *dev;
    ngx_acs_hub_t              *hub;
    void                       *handle;        /* running, parked */
    u_char                      key[NGX_ACS_DEDUP_KEY_LEN];
    uint16_t                    attempt;
    uint16_t                    status;        /* of the last answer */
    u_char                      state;
    u_char                      renewed;       /* the SAS token, once */
    u_char                      call;          /* goes first */
};


/* the dispatcher's work for a pass: 1 when some is left for the next */
typedef ngx_uint_t (*ngx_acs_engine_work_pt)(void);

/* a job is final: the dispatcher counts it (the record goes afterwards) */
typedef void (*ngx_acs_engine_final_pt)(ngx_acs_job_t *job,
    ngx_acs_final_e final);


ngx_int_t ngx_acs_engine_init(ngx_cycle_t *cycle, ngx_array_t *hubs,
    ngx_acs_registry_t *registry, ngx_acs_dedup_t *dedup,
    ngx_acs_engine_work_pt work, ngx_acs_engine_final_pt final);
void ngx_acs_engine_exit(ngx_cycle_t *cycle);

/* a zeroed job record, or NULL */
ngx_acs_job_t *ngx_acs_engine_job(void);

/* a record that was never queued goes back */
void ngx_acs_engine_free(ngx_acs_job_t *job);

/* a made job (delivery, event, dev, hub, key, call set) waits its turn */
void ngx_acs_engine_queue(ngx_acs_job_t *job);

/*
 * The deadline: a job not running leaves the queues and is final
 * (dropped), logged at error when it had tried and log is set.
 */

#define NGX_ACS_DROP_RUNNING  0
#define NGX_ACS_DROP_DONE     1
#define NGX_ACS_DROP_LOGGED   2

ngx_uint_t ngx_acs_engine_drop(ngx_acs_job_t *job, ngx_uint_t log);

/* jobs queued, running or waiting for a retry in this worker */
ngx_uint_t ngx_acs_engine_queued(void);

/* a pass of the engine soon: there is work */
void ngx_acs_engine_post(void);


#endif /* _NGX_ACS_ENGINE_H_INCLUDED_ */
