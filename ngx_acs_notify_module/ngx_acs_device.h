
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A device, as the store that holds it gives it (ngx_acs_store.h): its
 * platform, its handle and keys, and where a push to it goes.
 */


#ifndef _NGX_ACS_DEVICE_H_INCLUDED_
#define _NGX_ACS_DEVICE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_platform.h"


#define NGX_ACS_RAW_ID_MAX      256
#define NGX_ACS_DEVICE_ID_MAX   64
#define NGX_ACS_HANDLE_MAX      4096


/* where a push to a device goes (docs/dispatch.md, section 8) */

typedef enum {
    NGX_ACS_TARGET_HANDLE = 0,      /* its own handle: a direct send */
    NGX_ACS_TARGET_TAG,             /* a tag: the installations of the
                                       user that have its platform */
    NGX_ACS_TARGETS
} ngx_acs_target_e;


typedef struct {
    ngx_str_t                   device_id;
    ngx_acs_platform_e          platform;
    time_t                      expires;
    ngx_str_t                   handle;     /* or the tag */
    ngx_str_t                   p256dh;     /* a platform with keys only */
    ngx_str_t                   auth;
    ngx_acs_target_e            target;
} ngx_acs_device_t;


/*
 * What de-duplication knows a device by: its handle; a tag, shared by the
 * platforms of the user, by its platform (the device id of a tag send)
 */

static ngx_inline ngx_str_t *
ngx_acs_device_key(ngx_acs_device_t *dev)
{
    return (dev->target == NGX_ACS_TARGET_TAG) ? &dev->device_id
                                               : &dev->handle;
}


/*
 * A device of a platform with keys (web push) pushed to directly must
 * carry them; a tag's installations keep theirs at the hub
 */

static ngx_inline ngx_uint_t
ngx_acs_device_lacks_keys(ngx_acs_device_t *dev, ngx_acs_platform_t *p)
{
    return p->keys && dev->target == NGX_ACS_TARGET_HANDLE
           && (dev->auth.len == 0 || dev->p256dh.len == 0);
}


#endif /* _NGX_ACS_DEVICE_H_INCLUDED_ */
