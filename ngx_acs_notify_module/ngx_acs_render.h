
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Routing (which ACS event goes to whom, and as what) and rendering (the
 * Notification Hubs direct-send request for one device): plain functions
 * over event records (ngx_acs_event.h) and registrations
 * (ngx_acs_registry.h), no HTTP.
 */


#ifndef _NGX_ACS_RENDER_H_INCLUDED_
#define _NGX_ACS_RENDER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_event.h"
#include "ngx_acs_registry.h"


#define NGX_ACS_PAYLOAD_APNS_MAX   4096
#define NGX_ACS_PAYLOAD_FCM_MAX    4096
#define NGX_ACS_PAYLOAD_WNS_MAX    5120


typedef enum {
    NGX_ACS_INTENT_NONE = 0,
    NGX_ACS_INTENT_CHAT_MESSAGE,     /* ChatMessageReceived */
    NGX_ACS_INTENT_CHAT_ADDED,       /* added to a chat thread */
    NGX_ACS_INTENT_INCOMING_CALL     /* IncomingCall */
} ngx_acs_intent_e;


typedef struct {
    ngx_acs_intent_e            intent;
    ngx_str_t                   recipient;   /* raw id, the registry key */
} ngx_acs_route_t;


/* one extra request header of a push, e.g. apns-push-type: voip */

typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   value;
} ngx_acs_header_t;


/* the direct-send request for one device */

typedef struct {
    ngx_str_t                   format;        /* apple, fcmv1, windows... */
    ngx_str_t                   content_type;
    ngx_str_t                   body;
    ngx_acs_header_t            headers[6];    /* apns-*, X-WNS-Type, Auth */
    ngx_uint_t                  nheaders;
    ngx_uint_t                  voip;          /* unsigned:1: to the VoIP hub */
} ngx_acs_push_t;


typedef struct ngx_acs_template_s  ngx_acs_template_t;


typedef struct {
    ngx_flag_t                  preview;       /* acs_notify_preview */
    ngx_array_t                *templates;     /* of ngx_acs_template_t */
} ngx_acs_render_conf_t;


/*
 * NGX_OK: the event is for route->recipient, as route->intent.
 * NGX_DECLINED: no push for this event type, or for this recipient (the
 * one who created the thread or added the participant; counted as
 * "ignored").
 * NGX_ERROR: a pushable event without a usable recipient (logged by the
 * caller as such, not retried).
 * The recipient points into the event, or into pool for a phone number
 * ("4:" + phoneNumber.value).
 */
ngx_int_t ngx_acs_route(ngx_pool_t *pool, ngx_acs_event_t *ev,
    ngx_acs_route_t *route);

/*
 * Renders the push of an event for one device.  An incoming call goes as a
 * VoIP push to apns-voip devices (push->voip = 1: the dispatcher sends it
 * to the VoIP hub when one is configured), as an alert to apns devices;
 * apns-voip devices get nothing for chat events (iOS allows VoIP pushes
 * only for calls).  NGX_OK, NGX_DECLINED (nothing to send to this device
 * for this event), NGX_ERROR (out of memory).
 */
ngx_int_t ngx_acs_render(ngx_pool_t *pool, ngx_acs_render_conf_t *conf,
    ngx_acs_event_t *ev, ngx_acs_route_t *route, ngx_acs_device_t *dev,
    ngx_acs_push_t *push);

/* acs_notify_template EVENT_TYPE PLATFORM PAYLOAD, checked and compiled */
char *ngx_acs_template_add(ngx_conf_t *cf, ngx_array_t **templates,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload);


#endif /* _NGX_ACS_RENDER_H_INCLUDED_ */
