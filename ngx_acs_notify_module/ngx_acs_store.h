
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Where devices live: a registry on disk (acs_notify_registry PATH,
 * ngx_acs_registry.c) or Notification Hubs installations (acs_notify_registry
 * hub=NAME, ngx_acs_install.c), chosen once, when the configuration is
 * read.  The rest of the module reaches devices through this interface
 * alone: an operation (put, get, list, delete) that completes through a
 * handler, at once for the registry on disk, when the hub has answered
 * for installations; and the push targets of a user for a delivery.
 */


#ifndef _NGX_ACS_STORE_H_INCLUDED_
#define _NGX_ACS_STORE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_device.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_hub.h"


typedef struct ngx_acs_store_s     ngx_acs_store_t;
typedef struct ngx_acs_store_op_s  ngx_acs_store_op_t;

typedef void (*ngx_acs_store_done_pt)(ngx_acs_store_op_t *op);


typedef enum {
    NGX_ACS_STORE_PUT = 0,
    NGX_ACS_STORE_GET,
    NGX_ACS_STORE_LIST,
    NGX_ACS_STORE_DELETE           /* a device, or all the user's: no id */
} ngx_acs_store_kind_e;


struct ngx_acs_store_op_s {
    /* set by the caller */
    ngx_acs_store_t            *store;
    ngx_acs_store_kind_e        kind;
    ngx_str_t                   raw_id;
    ngx_str_t                   device_id;
    ngx_acs_device_t            dev;           /* PUT: in; GET: out */
    long long                   ttl;           /* PUT: seconds, -1: none
                                                  asked */
    ngx_pool_t                 *pool;          /* lives until done ran */
    ngx_log_t                  *log;
    ngx_acs_store_done_pt       done;
    void                       *data;

    /*
     * The outcome, when done runs: status 200, 201 (PUT: created), 204
     * (DELETE), or a refusal's with its code and reason (400, 404, 409,
     * 501, 502, 503 with retry_after, 507), or 500 without a code (logged).
     */
    ngx_uint_t                  status;
    const char                 *code;
    ngx_str_t                   reason;
    time_t                      retry_after;   /* 0: the module's default */
    ngx_array_t                 devices;       /* LIST: of
                                                  ngx_acs_device_t */

    void                       *ctx;           /* the store's */
};


/* acs_notify_registry PATH [...] | hub=NAME [...] */
char *ngx_acs_store_create(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_acs_store_t **store);

/* once every acs_notify_hub is known */
ngx_int_t ngx_acs_store_init_conf(ngx_conf_t *cf, ngx_acs_store_t *store,
    ngx_array_t *hubs);

/*
 * The hubs of a webhook location, as the store has them: a hub registry
 * pushes through its own hub and VoIP hub.  NGX_OK, or NGX_ERROR (logged).
 */
ngx_int_t ngx_acs_store_hubs(ngx_conf_t *cf, ngx_acs_store_t *store,
    ngx_acs_hub_t *hub, ngx_acs_hub_t **voip_hub);

ngx_int_t ngx_acs_store_init_module(ngx_cycle_t *cycle,
    ngx_acs_store_t *store);
ngx_int_t ngx_acs_store_init_process(ngx_cycle_t *cycle,
    ngx_acs_store_t *store);
void ngx_acs_store_exit_process(ngx_acs_store_t *store);

/*
 * Whether the store can do the operation at all, before its input is
 * read: NGX_OK, or NGX_DECLINED with the refusal in op (status, code,
 * reason); done does not run.
 */
ngx_int_t ngx_acs_store_check(ngx_acs_store_op_t *op);

/* NGX_OK: op->done runs, at once or later, always; NGX_ERROR: it will not */
ngx_int_t ngx_acs_store_start(ngx_acs_store_op_t *op);

/*
 * The push targets of a user, for a delivery, at once: NGX_OK (none is
 * fine), or NGX_ERROR (the store failed: logged)
 */
ngx_int_t ngx_acs_store_targets(ngx_acs_store_t *store, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices);

/*
 * The registry on disk that handles Notification Hubs reports gone are
 * removed from; NULL for a hub registry (the hub drops them itself)
 */
ngx_acs_registry_t *ngx_acs_store_registry(ngx_acs_store_t *store);


#endif /* _NGX_ACS_STORE_H_INCLUDED_ */
