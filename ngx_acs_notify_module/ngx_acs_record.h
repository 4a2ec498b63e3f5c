
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A registration as the registry on disk keeps it: its key and its
 * record, the layout tools/acs-registry-to-hub reads too.  Plain bytes,
 * no LMDB.
 */


#ifndef _NGX_ACS_RECORD_H_INCLUDED_
#define _NGX_ACS_RECORD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_device.h"


#define NGX_ACS_RECORD_KEY_MAX                                                \
    (NGX_ACS_RAW_ID_MAX + 1 + NGX_ACS_DEVICE_ID_MAX)


/*
 * The key of a device: raw id, NUL, device id, so that the devices of a
 * user are one contiguous range; without device_id, the range's prefix.
 * Returns its length, at most NGX_ACS_RECORD_KEY_MAX.
 */
size_t ngx_acs_record_key(u_char *buf, ngx_str_t *raw_id,
    ngx_str_t *device_id);

/* the size of the record of a device */
size_t ngx_acs_record_size(ngx_acs_device_t *dev);

/* the record of a device, written at p: ngx_acs_record_size() bytes */
void ngx_acs_record_write(u_char *p, ngx_acs_device_t *dev, time_t updated);

/* when a record expires; 0 for bytes too short to be one */
time_t ngx_acs_record_expires(u_char *p, size_t len);

/* 1 when the record holds the handle */
ngx_uint_t ngx_acs_record_handle_is(u_char *p, size_t len,
    ngx_str_t *handle);

/*
 * The device of a key (the device id after its prefix) and its record,
 * copied into pool: NGX_OK, NGX_DECLINED (not a record this version
 * reads), NGX_ERROR.
 */
ngx_int_t ngx_acs_record_read(u_char *key, size_t key_len, size_t prefix,
    u_char *p, size_t len, ngx_pool_t *pool, ngx_acs_device_t *dev);


#endif /* _NGX_ACS_RECORD_H_INCLUDED_ */
