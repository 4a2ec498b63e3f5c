
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


typedef struct ngx_acs_dedup_s  ngx_acs_dedup_t;


ngx_acs_dedup_t *ngx_acs_dedup_create(ngx_conf_t *cf, size_t size,
    time_t ttl);

void ngx_acs_dedup_key(u_char *key, ngx_str_t *event_id, ngx_str_t *type,
    ngx_str_t *subject, ngx_str_t *raw_id, ngx_str_t *handle);

/* NGX_OK: seen (and not expired), NGX_DECLINED: not seen */
ngx_int_t ngx_acs_dedup_seen(ngx_acs_dedup_t *d, u_char *key);
void ngx_acs_dedup_add(ngx_acs_dedup_t *d, u_char *key, ngx_log_t *log);


#endif /* _NGX_ACS_DEDUP_H_INCLUDED_ */
