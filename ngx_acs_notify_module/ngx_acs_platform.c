
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The platform table.  Handles: APNs a hex token of 64 to 200 digits; FCM
 * a registration token of the characters Google uses, up to 4096; WNS and
 * web push an https URL of up to 2048 bytes.  Payload limits are those of
 * Notification Hubs: 4096 bytes, 5120 for WNS.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_platform.h"
#include "ngx_acs_device.h"
#include "ngx_acs_render.h"
#include "ngx_acs_shape.h"


static ngx_int_t ngx_acs_check_apns(ngx_str_t *handle);
static ngx_int_t ngx_acs_check_fcm(ngx_str_t *handle);
static ngx_int_t ngx_acs_check_url(ngx_str_t *handle);


#define NGX_ACS_JSON_TYPE  ngx_string("application/json;charset=utf-8")


/* a row per ngx_acs_platform_e from NGX_ACS_PLATFORM_APNS, in its order */

static ngx_acs_platform_t  ngx_acs_platforms[] = {

    { .id = NGX_ACS_PLATFORM_APNS,
      .name = ngx_string("apns"),
      .format = ngx_string("apple"),
      .content_type = NGX_ACS_JSON_TYPE,
      .limit = 4096,
      .markup = NGX_ACS_MARKUP_JSON,
      .build = ngx_acs_build_apns,
      .headers = ngx_acs_headers_apns,
      .shape = ngx_acs_shape_apns,
      .installation = ngx_string("apns"),
      .hub_default = 1,
      .check = ngx_acs_check_apns,
      .keys = 0,
      .voip = NGX_ACS_VOIP_YIELDS,
      .expiry_in_body = 0 },

    { .id = NGX_ACS_PLATFORM_APNS_VOIP,
      .name = ngx_string("apns-voip"),
      .format = ngx_string("apple"),
      .content_type = NGX_ACS_JSON_TYPE,
      .limit = 4096,
      .markup = NGX_ACS_MARKUP_JSON,
      .build = ngx_acs_build_voip,
      .headers = ngx_acs_headers_voip,
      .shape = ngx_acs_shape_apns,
      .installation = ngx_string("apns"),
      .hub_default = 1,
      .check = ngx_acs_check_apns,
      .keys = 0,
      .voip = NGX_ACS_VOIP_ONLY,
      .expiry_in_body = 0 },

    { .id = NGX_ACS_PLATFORM_FCMV1,
      .name = ngx_string("fcmv1"),
      .format = ngx_string("fcmv1"),
      .content_type = NGX_ACS_JSON_TYPE,
      .limit = 4096,
      .markup = NGX_ACS_MARKUP_JSON,
      .build = ngx_acs_build_fcmv1,
      .headers = NULL,
      .shape = ngx_acs_shape_fcmv1,
      .installation = ngx_string("fcmv1"),
      .hub_default = 1,
      .check = ngx_acs_check_fcm,
      .keys = 0,
      .voip = NGX_ACS_VOIP_NONE,
      .expiry_in_body = 1 },

    { .id = NGX_ACS_PLATFORM_WNS,
      .name = ngx_string("wns"),
      .format = ngx_string("windows"),
      .content_type = ngx_string("application/xml"),
      .limit = 5120,
      .markup = NGX_ACS_MARKUP_XML,
      .build = ngx_acs_build_wns,
      .headers = ngx_acs_headers_wns,
      .shape = ngx_acs_shape_toast,
      .installation = ngx_string("wns"),
      .hub_default = 0,
      .check = ngx_acs_check_url,
      .keys = 0,
      .voip = NGX_ACS_VOIP_NONE,
      .expiry_in_body = 0 },

    { .id = NGX_ACS_PLATFORM_BROWSER,
      .name = ngx_string("browser"),
      .format = ngx_string("browser"),
      .content_type = NGX_ACS_JSON_TYPE,
      .limit = 4096,
      .markup = NGX_ACS_MARKUP_JSON,
      .build = ngx_acs_build_browser,
      .headers = ngx_acs_headers_browser,
      .shape = ngx_acs_shape_json,
      .installation = ngx_string("browser"),
      .hub_default = 0,
      .check = ngx_acs_check_url,
      .keys = 1,
      .voip = NGX_ACS_VOIP_NONE,
      .expiry_in_body = 0 }
};

#define NGX_ACS_PLATFORM_ROWS                                                 \
    (sizeof(ngx_acs_platforms) / sizeof(ngx_acs_platform_t))

/* a row for every platform, or this does not compile */
typedef char  ngx_acs_platforms_all[
    (NGX_ACS_PLATFORM_ROWS == NGX_ACS_PLATFORMS - NGX_ACS_PLATFORM_APNS)
    ? 1 : -1];


ngx_acs_platform_t *
ngx_acs_platform_find(ngx_str_t *name)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_ACS_PLATFORM_ROWS; i++) {
        if (ngx_acs_platforms[i].name.len == name->len
            && ngx_strncmp(ngx_acs_platforms[i].name.data, name->data,
                           name->len)
               == 0)
        {
            return &ngx_acs_platforms[i];
        }
    }

    return NULL;
}


ngx_acs_platform_t *
ngx_acs_platform(ngx_uint_t id)
{
    if (id < NGX_ACS_PLATFORM_APNS || id >= NGX_ACS_PLATFORMS) {
        return NULL;
    }

    return &ngx_acs_platforms[id - NGX_ACS_PLATFORM_APNS];
}


u_char *
ngx_acs_platform_names(u_char *p, u_char *end, const char *last)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_ACS_PLATFORM_ROWS; i++) {
        p = ngx_snprintf(p, end - p, "%s%V",
                         (i == 0) ? ""
                         : (i == NGX_ACS_PLATFORM_ROWS - 1) ? last : ", ",
                         &ngx_acs_platforms[i].name);
    }

    return p;
}


static ngx_int_t
ngx_acs_check_apns(ngx_str_t *handle)
{
    u_char  *p, *last;

    if (handle->len < 64 || handle->len > 200) {
        return NGX_DECLINED;
    }

    for (p = handle->data, last = p + handle->len; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')
              || (*p >= 'A' && *p <= 'F')))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_check_fcm(ngx_str_t *handle)
{
    u_char  *p, *last;

    if (handle->len == 0 || handle->len > NGX_ACS_HANDLE_MAX) {
        return NGX_DECLINED;
    }

    for (p = handle->data, last = p + handle->len; p < last; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || (*p >= 'A' && *p <= 'Z') || *p == '_' || *p == '-'
              || *p == ':'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_check_url(ngx_str_t *handle)
{
    u_char  *p, *last;

    p = handle->data;
    last = p + handle->len;

    if (handle->len <= 8 || handle->len > 2048
        || ngx_strncasecmp(p, (u_char *) "https://", 8) != 0)
    {
        return NGX_DECLINED;
    }

    for (p += 8; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '<' || *p == '>'
            || *p == '\\')
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}
