
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Record: version (1 byte), platform (1, ngx_acs_platform_e: append only),
 * lengths of handle, p256dh and auth (2 each), expires and updated (8
 * each, seconds since the epoch), then the three strings.  Numbers are
 * copied in the host's byte order: the files do not move between machines
 * of another order (LMDB's own pages are in host order too).
 * t/012-platform-copies.t holds tools/acs-registry-to-hub to this layout.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_record.h"


#define NGX_ACS_REC_VERSION  1
#define NGX_ACS_REC_HEADER   24


size_t
ngx_acs_record_key(u_char *buf, ngx_str_t *raw_id, ngx_str_t *device_id)
{
    u_char  *p;

    p = ngx_cpymem(buf, raw_id->data, raw_id->len);
    *p++ = '\0';

    if (device_id) {
        p = ngx_cpymem(p, device_id->data, device_id->len);
    }

    return p - buf;
}


size_t
ngx_acs_record_size(ngx_acs_device_t *dev)
{
    return NGX_ACS_REC_HEADER + dev->handle.len + dev->p256dh.len
           + dev->auth.len;
}


void
ngx_acs_record_write(u_char *p, ngx_acs_device_t *dev, time_t updated)
{
    int64_t   t;
    uint16_t  len;

    p[0] = NGX_ACS_REC_VERSION;
    p[1] = (u_char) dev->platform;
    len = (uint16_t) dev->handle.len;
    ngx_memcpy(p + 2, &len, 2);
    len = (uint16_t) dev->p256dh.len;
    ngx_memcpy(p + 4, &len, 2);
    len = (uint16_t) dev->auth.len;
    ngx_memcpy(p + 6, &len, 2);
    t = dev->expires;
    ngx_memcpy(p + 8, &t, 8);
    t = updated;
    ngx_memcpy(p + 16, &t, 8);

    p += NGX_ACS_REC_HEADER;
    p = ngx_cpymem(p, dev->handle.data, dev->handle.len);
    p = ngx_cpymem(p, dev->p256dh.data, dev->p256dh.len);
    ngx_memcpy(p, dev->auth.data, dev->auth.len);
}


time_t
ngx_acs_record_expires(u_char *p, size_t len)
{
    int64_t  t;

    if (len < NGX_ACS_REC_HEADER) {
        return 0;
    }

    ngx_memcpy(&t, p + 8, 8);

    return (time_t) t;
}


ngx_uint_t
ngx_acs_record_handle_is(u_char *p, size_t len, ngx_str_t *handle)
{
    uint16_t  hl;

    if (len < NGX_ACS_REC_HEADER) {
        return 0;
    }

    ngx_memcpy(&hl, p + 2, 2);

    return hl == handle->len
           && len >= NGX_ACS_REC_HEADER + (size_t) hl
           && ngx_memcmp(p + NGX_ACS_REC_HEADER, handle->data, hl) == 0;
}


ngx_int_t
ngx_acs_record_read(u_char *key, size_t key_len, size_t prefix, u_char *p,
    size_t len, ngx_pool_t *pool, ngx_acs_device_t *dev)
{
    u_char    *copy;
    int64_t    t;
    uint16_t   hl, pl, al;

    if (len < NGX_ACS_REC_HEADER || p[0] != NGX_ACS_REC_VERSION) {
        return NGX_DECLINED;
    }

    ngx_memcpy(&hl, p + 2, 2);
    ngx_memcpy(&pl, p + 4, 2);
    ngx_memcpy(&al, p + 6, 2);

    if (len != (size_t) NGX_ACS_REC_HEADER + hl + pl + al
        || ngx_acs_platform(p[1]) == NULL)
    {
        return NGX_DECLINED;
    }

    /* every field, those a record does not hold included: a direct target */
    ngx_memzero(dev, sizeof(ngx_acs_device_t));

    /* the bytes are the caller's transaction's, which ends: copy */

    copy = ngx_pnalloc(pool, key_len - prefix + hl + pl + al);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    dev->platform = p[1];
    ngx_memcpy(&t, p + 8, 8);
    dev->expires = (time_t) t;

    /* p + 16: when it was written, for the tools; nginx needs it not */

    dev->device_id.data = copy;
    dev->device_id.len = key_len - prefix;
    copy = ngx_cpymem(copy, key + prefix, dev->device_id.len);

    p += NGX_ACS_REC_HEADER;

    dev->handle.data = copy;
    dev->handle.len = hl;
    copy = ngx_cpymem(copy, p, hl);
    p += hl;

    dev->p256dh.data = copy;
    dev->p256dh.len = pl;
    copy = ngx_cpymem(copy, p, pl);
    p += pl;

    dev->auth.data = copy;
    dev->auth.len = al;
    ngx_memcpy(copy, p, al);

    return NGX_OK;
}
