
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The push platforms, in one table: the name apps register with, what
 * Notification Hubs calls it, the content type and size limit of its
 * payloads, the builder of its payload and headers, the check of its
 * device handles, and which pushes it takes.
 */


#ifndef _NGX_ACS_PLATFORM_H_INCLUDED_
#define _NGX_ACS_PLATFORM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_ACS_PLATFORM_APNS = 1,
    NGX_ACS_PLATFORM_APNS_VOIP,
    NGX_ACS_PLATFORM_FCMV1,
    NGX_ACS_PLATFORM_WNS,
    NGX_ACS_PLATFORM_BROWSER
} ngx_acs_platform_e;

#define NGX_ACS_PLATFORMS  (NGX_ACS_PLATFORM_BROWSER + 1)


typedef struct ngx_acs_render_s  ngx_acs_render_t;

/* the payload of a push, from the event's message (ngx_acs_render.c) */
typedef ngx_int_t (*ngx_acs_build_pt)(ngx_acs_render_t *rd, ngx_str_t *out);

/* NGX_OK when a device handle has the platform's form */
typedef ngx_int_t (*ngx_acs_check_pt)(ngx_str_t *handle);


typedef struct {
    ngx_acs_platform_e          id;
    ngx_str_t                   name;          /* "apns-voip" */
    ngx_str_t                   format;        /* NH's: "apple" */
    ngx_str_t                   installation;  /* NH's platform: "apns" */
    ngx_str_t                   content_type;
    size_t                      limit;         /* payload bytes */
    ngx_acs_build_pt            build;
    ngx_acs_check_pt            check;

    unsigned                    calls_only:1;  /* VoIP: calls only */
    unsigned                    voip:1;        /* to the VoIP hub */
    unsigned                    rings_voip:1;  /* no call push to it when the
                                                  user has a VoIP device */
    unsigned                    keys:1;        /* needs p256dh and auth */
    unsigned                    xml:1;         /* an XML payload */
    unsigned                    apns:1;        /* apns-* headers */
    unsigned                    expiry_in_body:1;  /* a call's payload
                                                      says its time left */
} ngx_acs_platform_t;


/* the platform of a registration's "platform" value, or NULL */
ngx_acs_platform_t *ngx_acs_platform_find(ngx_str_t *name);

/* the platform of a stored id; never NULL for a valid id */
ngx_acs_platform_t *ngx_acs_platform(ngx_uint_t id);


#endif /* _NGX_ACS_PLATFORM_H_INCLUDED_ */
