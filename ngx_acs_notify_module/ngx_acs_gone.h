
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Device handles Notification Hubs answered 410 for: removed from the
 * registry a few per write transaction, one transaction per turn of the
 * event loop, so that a burst of them never holds the worker.
 */


#ifndef _NGX_ACS_GONE_H_INCLUDED_
#define _NGX_ACS_GONE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_registry.h"


ngx_int_t ngx_acs_gone_init(ngx_cycle_t *cycle, ngx_acs_registry_t *reg);

/* the handle of the user is removed soon (copied: the caller's may go) */
void ngx_acs_gone_add(ngx_str_t *raw_id, ngx_str_t *handle);

/* every handle left is removed now */
void ngx_acs_gone_exit(void);


#endif /* _NGX_ACS_GONE_H_INCLUDED_ */
