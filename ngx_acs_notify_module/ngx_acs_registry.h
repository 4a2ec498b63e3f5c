
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The device registry on disk: registrations of push handles per ACS
 * identity (raw id), in an LMDB environment shared by every worker.  Its
 * devices are pushed to directly (NGX_ACS_TARGET_HANDLE).
 */


#ifndef _NGX_ACS_REGISTRY_H_INCLUDED_
#define _NGX_ACS_REGISTRY_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_device.h"


/* a handle Notification Hubs reported gone, and its user */

typedef struct {
    ngx_str_t                   raw_id;
    ngx_str_t                   handle;
} ngx_acs_gone_t;


typedef struct ngx_acs_registry_s  ngx_acs_registry_t;


char *ngx_acs_registry_create(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_acs_registry_t **registry);
ngx_int_t ngx_acs_registry_check(ngx_acs_registry_t *reg, ngx_log_t *log);
ngx_int_t ngx_acs_registry_init_module(ngx_cycle_t *cycle,
    ngx_acs_registry_t *reg);
ngx_int_t ngx_acs_registry_init_process(ngx_cycle_t *cycle,
    ngx_acs_registry_t *reg);
void ngx_acs_registry_exit_process(ngx_acs_registry_t *reg);

time_t ngx_acs_registry_ttl(ngx_acs_registry_t *reg);

/*
 * The operations.  Each returns NGX_OK, NGX_DECLINED (not found),
 * NGX_BUSY (put: the user has max_devices others already),
 * NGX_ABORT (put: the database is full, i.e. the record would eat into
 * the room kept for deletes and expiry), NGX_AGAIN (the disk is full:
 * put, or a write where the disk's room could not be kept ahead) or
 * NGX_ERROR (logged).  A full database or disk is logged once per
 * episode, by the registry.
 */
ngx_int_t ngx_acs_registry_put(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_acs_device_t *dev, ngx_log_t *log, ngx_uint_t *created);
ngx_int_t ngx_acs_registry_get(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_pool_t *pool, ngx_log_t *log,
    ngx_acs_device_t *dev);
ngx_int_t ngx_acs_registry_list(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices);
ngx_int_t ngx_acs_registry_delete(ngx_acs_registry_t *reg,
    ngx_str_t *raw_id, ngx_str_t *device_id, ngx_log_t *log);
ngx_int_t ngx_acs_registry_remove_handles(ngx_acs_registry_t *reg,
    ngx_acs_gone_t *gone, ngx_uint_t n, ngx_log_t *log, ngx_uint_t *done);
ngx_int_t ngx_acs_registry_count(ngx_acs_registry_t *reg, ngx_log_t *log,
    size_t *count);
ngx_int_t ngx_acs_registry_sweep(ngx_acs_registry_t *reg, ngx_log_t *log,
    ngx_uint_t max, ngx_uint_t *purged);


#endif /* _NGX_ACS_REGISTRY_H_INCLUDED_ */
