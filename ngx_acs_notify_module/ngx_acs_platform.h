
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The push platforms, in one table: the name apps register with, what
 * Notification Hubs calls it, the content type and size limit of its
 * payloads, the builders of its payload and headers, the check of its
 * templates and of its device handles, its name in an installation,
 * whether a hub registry pushes to it by default, and which pushes it
 * takes.  A new platform is a row, its builders, and tests and docs.
 */


#ifndef _NGX_ACS_PLATFORM_H_INCLUDED_
#define _NGX_ACS_PLATFORM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * The ids are stored on disk (the registry's records, and
 * tools/acs-registry-to-hub reads them): append only, never renumber.
 */

typedef enum {
    NGX_ACS_PLATFORM_APNS = 1,
    NGX_ACS_PLATFORM_APNS_VOIP = 2,
    NGX_ACS_PLATFORM_FCMV1 = 3,
    NGX_ACS_PLATFORM_WNS = 4,
    NGX_ACS_PLATFORM_BROWSER = 5
} ngx_acs_platform_e;

#define NGX_ACS_PLATFORMS  (NGX_ACS_PLATFORM_BROWSER + 1)


/* which pushes a platform takes, and where a call rings */

typedef enum {
    NGX_ACS_VOIP_NONE = 0,      /* every push; a call as it shows one */
    NGX_ACS_VOIP_YIELDS,        /* every push, but no call to a user who
                                   has a VoIP device: it rings there */
    NGX_ACS_VOIP_ONLY           /* calls only (iOS allows nothing else),
                                   through the VoIP hub when there is one */
} ngx_acs_voip_e;


/* how the texts of a payload are escaped */

typedef enum {
    NGX_ACS_MARKUP_JSON = 0,
    NGX_ACS_MARKUP_XML
} ngx_acs_markup_e;


typedef struct ngx_acs_render_s  ngx_acs_render_t;

/* the payload of a push, from the event's message (ngx_acs_render.c) */
typedef ngx_int_t (*ngx_acs_build_pt)(ngx_acs_render_t *rd, ngx_str_t *out);

/* the headers of a push beyond those of every push (ngx_acs_render.c) */
typedef void (*ngx_acs_headers_pt)(ngx_acs_render_t *rd);

/*
 * The shape of a template's payload, every placeholder replaced by "x"
 * (ngx_acs_shape.c): NULL when it has the platform's, else why not.
 */
typedef char *(*ngx_acs_shape_pt)(ngx_pool_t *pool, ngx_str_t *payload);

/* NGX_OK when a device handle has the platform's form */
typedef ngx_int_t (*ngx_acs_check_pt)(ngx_str_t *handle);


typedef struct {
    ngx_acs_platform_e          id;
    ngx_str_t                   name;          /* "apns-voip" */
    ngx_str_t                   format;        /* NH's: "apple" */
    ngx_str_t                   content_type;
    size_t                      limit;         /* payload bytes */
    ngx_acs_markup_e            markup;
    ngx_acs_build_pt            build;
    ngx_acs_headers_pt          headers;       /* NULL: none */
    ngx_acs_shape_pt            shape;
    ngx_str_t                   installation;  /* NH's platform: "apns" */
    ngx_uint_t                  hub_default;   /* unsigned:1, pushed to by a
                                                  hub registry without
                                                  platforms= (a VoIP
                                                  platform: when it has a
                                                  VoIP hub) */
    ngx_acs_check_pt            check;
    ngx_uint_t                  keys;          /* unsigned:1, a handle
                                                  needs p256dh and auth */
    ngx_acs_voip_e              voip;
    ngx_uint_t                  expiry_in_body;    /* unsigned:1, a call's
                                                      payload says its
                                                      time left */
} ngx_acs_platform_t;


/* the platform of a registration's "platform" value, or NULL */
ngx_acs_platform_t *ngx_acs_platform_find(ngx_str_t *name);

/* the platform of a stored id; NULL for an id no row has */
ngx_acs_platform_t *ngx_acs_platform(ngx_uint_t id);

/*
 * The names of the platforms, for messages: "apns, apns-voip, ..." with
 * last (", " or " or ") before the last one; returns the end of the text
 * written into [p, end).
 */
u_char *ngx_acs_platform_names(u_char *p, u_char *end, const char *last);


#endif /* _NGX_ACS_PLATFORM_H_INCLUDED_ */
