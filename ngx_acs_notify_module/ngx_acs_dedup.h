
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * De-duplication: (event, device) pairs Notification Hubs accepted, kept
 * in shared memory for every worker, so a redelivered event does not push
 * twice.
 */


#ifndef _NGX_ACS_DEDUP_H_INCLUDED_
#define _NGX_ACS_DEDUP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_ACS_DEDUP_KEY_LEN  16

/*
 * A pending claim outlives any push: deadline (< 30s) + one attempt.  Only
 * a claim whose worker cannot be told gone waits that long (see
 * ngx_acs_dedup.c); the others go when their worker does.
 */
#define NGX_ACS_DEDUP_PENDING  120


typedef struct ngx_acs_dedup_s  ngx_acs_dedup_t;


ngx_acs_dedup_t *ngx_acs_dedup_create(ngx_conf_t *cf, size_t size,
    time_t ttl);

/*
 * The worker starts: it takes its slot of nginx's process table in the
 * zone, and releases the claims of workers that are gone (its slot's
 * previous process among them).  Called once, in the worker.
 */
void ngx_acs_dedup_init_process(ngx_acs_dedup_t *d, ngx_log_t *log);

/* the worker ends: a claim it still holds is one of a worker gone */
void ngx_acs_dedup_exit_process(ngx_acs_dedup_t *d);

void ngx_acs_dedup_key(u_char *key, ngx_str_t *event_id, ngx_str_t *type,
    ngx_str_t *subject, ngx_str_t *raw_id, ngx_str_t *handle);

/*
 * Claims the pair for a push by owner, under the lock of the lookup:
 * NGX_OK the push is owner's to make (the claim is pending), NGX_DECLINED
 * it was sent already, NGX_DONE owner claimed it already, NGX_BUSY another
 * owner's push of it is in flight.  A claim of a worker that is gone is
 * taken over (NGX_OK, logged).  A claim that cannot be remembered (no
 * memory, logged) is NGX_OK: delivery stays at least once.
 */
ngx_int_t ngx_acs_dedup_claim(ngx_acs_dedup_t *d, u_char *key,
    uint64_t owner, ngx_log_t *log);

/* the push of a claim was accepted: remembered for the zone's ttl */
void ngx_acs_dedup_confirm(ngx_acs_dedup_t *d, u_char *key, uint64_t owner);

/* the push of a claim was not made or failed: forgotten */
void ngx_acs_dedup_release(ngx_acs_dedup_t *d, u_char *key, uint64_t owner);


#endif /* _NGX_ACS_DEDUP_H_INCLUDED_ */
