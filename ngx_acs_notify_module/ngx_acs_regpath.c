
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Plain buffers and a pool, no HTTP: the unit tests and fuzz targets link
 * it alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_device.h"
#include "ngx_acs_regpath.h"


static ngx_int_t ngx_acs_reg_segment(ngx_pool_t *pool, u_char **pos,
    u_char *last, ngx_str_t *seg);


ngx_int_t
ngx_acs_reg_path_parse(ngx_pool_t *pool, u_char *p, u_char *last,
    ngx_acs_reg_path_t *path)
{
    ngx_str_t   seg;
    ngx_uint_t  n;

    ngx_memzero(path, sizeof(ngx_acs_reg_path_t));

    /* users / {rawId} [ / devices [ / {deviceId} ] ] */

    for (n = 0; p < last; n++) {

        if (ngx_acs_reg_segment(pool, &p, last, &seg) != NGX_OK) {
            return NGX_ERROR;
        }

        switch (n) {

        case 0:
            if (seg.len != 5 || ngx_strncmp(seg.data, "users", 5) != 0) {
                return NGX_DECLINED;
            }
            break;

        case 1:
            path->raw_id = seg;
            break;

        case 2:
            if (seg.len != 7 || ngx_strncmp(seg.data, "devices", 7) != 0) {
                return NGX_DECLINED;
            }
            path->devices = 1;
            break;

        case 3:
            path->device_id = seg;
            break;

        default:
            return NGX_DECLINED;
        }
    }

    if (n < 2 || (n == 4 && path->device_id.len == 0)) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_reg_path_check(ngx_acs_reg_path_t *path, const char **code,
    const char **reason)
{
    u_char  *p, *last;

    *code = "InvalidRawId";

    if (path->raw_id.len == 0 || path->raw_id.len > NGX_ACS_RAW_ID_MAX) {
        *reason = "raw id must be 1 to " ngx_value(NGX_ACS_RAW_ID_MAX)
                  " bytes";
        return NGX_DECLINED;
    }

    last = path->raw_id.data + path->raw_id.len;

    for (p = path->raw_id.data; p < last; p++) {
        if (*p < 0x21 || *p == 0x7f) {
            *reason = "raw id holds a space or a control character";
            return NGX_DECLINED;
        }
    }

    if (path->device_id.len == 0) {
        return NGX_OK;
    }

    *code = "InvalidDeviceId";
    *reason = "device id must match [A-Za-z0-9._-]{1,"
              ngx_value(NGX_ACS_DEVICE_ID_MAX) "}";

    if (path->device_id.len > NGX_ACS_DEVICE_ID_MAX) {
        return NGX_DECLINED;
    }

    last = path->device_id.data + path->device_id.len;

    for (p = path->device_id.data; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '.' || *p == '_'
              || *p == '-'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_reg_segment(ngx_pool_t *pool, u_char **pos, u_char *last,
    ngx_str_t *seg)
{
    u_char  *p, *end, *dst;

    p = *pos;
    end = ngx_strlchr(p, last, '/');
    if (end == NULL) {
        end = last;
    }

    seg->data = ngx_pnalloc(pool, (end - p) + 1);
    if (seg->data == NULL) {
        return NGX_ERROR;
    }

    dst = seg->data;
    ngx_unescape_uri(&dst, &p, end - p, 0);
    seg->len = dst - seg->data;

    *pos = (end < last) ? end + 1 : end;

    return NGX_OK;
}
