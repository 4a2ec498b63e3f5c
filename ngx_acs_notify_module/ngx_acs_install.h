
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A hub registry (acs_notify_registry hub=NAME): devices kept as
 * Notification Hubs installations, tagged with their user, and pushes sent
 * to the user's tag, so that nginx nodes keep no device state
 * (docs/registrations.md, section 5).
 */


#ifndef _NGX_ACS_INSTALL_H_INCLUDED_
#define _NGX_ACS_INSTALL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_hub.h"
#include "ngx_acs_curl.h"
#include "ngx_acs_device.h"


#define NGX_ACS_TAG_MAX         120     /* NH's limit on a tag */
#define NGX_ACS_INSTALL_ID_LEN  44      /* "acs-" and 40 hex digits */


typedef struct {
    ngx_str_t                   hub_name;
    ngx_str_t                   voip_hub_name;
    ngx_acs_hub_t              *hub;
    ngx_acs_hub_t              *voip_hub;      /* apns-voip; else hub */
    ngx_uint_t                  platforms;     /* 1 << ngx_acs_platform_e */
} ngx_acs_install_conf_t;


/* acs_notify_registry hub=NAME [voip_hub=NAME] [platforms=P,...] */
char *ngx_acs_install_create(ngx_conf_t *cf, ngx_str_t *args,
    ngx_uint_t nargs, ngx_acs_install_conf_t **ic);

/* the hubs named, once every acs_notify_hub is known */
ngx_int_t ngx_acs_install_init_conf(ngx_conf_t *cf,
    ngx_acs_install_conf_t *ic, ngx_array_t *hubs);

/*
 * The tag of a user: "u:" and the raw id, each byte outside
 * a-z 0-9 _ @ . : - written as "#" and two lower-case hex digits, so that
 * the mapping is lossless and the same whether NH compares tags with case
 * or without (VoIP installations carry it with "v:" instead of "u:").
 * NGX_DECLINED when the tag would be longer than NGX_ACS_TAG_MAX: out->len
 * is then its length, out->data NULL.
 */
ngx_int_t ngx_acs_install_tag(ngx_pool_t *pool, ngx_str_t *raw_id,
    ngx_str_t *out);

/*
 * What a delivery pushes to a user in hub mode: one device per platform
 * of the registry, its handle the user's tag (target NGX_ACS_TARGET_TAG).
 * NGX_OK, NGX_DECLINED (no tag fits: logged by the caller), NGX_ERROR.
 */
ngx_int_t ngx_acs_install_devices(ngx_acs_install_conf_t *ic,
    ngx_pool_t *pool, ngx_str_t *raw_id, ngx_array_t *devices);


/* one device's installation, written, read or deleted */

typedef enum {
    NGX_ACS_INSTALL_PUT = 0,
    NGX_ACS_INSTALL_GET,
    NGX_ACS_INSTALL_DELETE
} ngx_acs_install_kind_e;


/*
 * The requests an operation makes, one after the other:
 *   PUT     WRITE at the device's hub, then UNWRITE at the other hub
 *   GET     READ at the hub, then READ_VOIP at the VoIP hub if not found
 *   DELETE  READ, READ_VOIP, then REMOVE where it was found
 */

typedef enum {
    NGX_ACS_INSTALL_WRITE = 0,      /* PUT */
    NGX_ACS_INSTALL_UNWRITE,        /* DELETE at the other hub */
    NGX_ACS_INSTALL_READ,           /* GET at the hub */
    NGX_ACS_INSTALL_READ_VOIP,      /* GET at the VoIP hub */
    NGX_ACS_INSTALL_REMOVE          /* DELETE where it was read */
} ngx_acs_install_step_e;


typedef struct ngx_acs_install_op_s  ngx_acs_install_op_t;

typedef void (*ngx_acs_install_done_pt)(ngx_acs_install_op_t *op);


struct ngx_acs_install_op_s {
    /* set by the caller */
    ngx_acs_install_conf_t     *conf;
    ngx_acs_install_kind_e      kind;
    ngx_str_t                   raw_id;
    ngx_str_t                   tag;           /* ngx_acs_install_tag() */
    ngx_acs_device_t            dev;           /* PUT: in; GET: out */
    ngx_pool_t                 *pool;          /* lives until done ran */
    ngx_log_t                  *log;
    ngx_acs_install_done_pt     done;
    void                       *data;

    /*
     * The outcome, when done runs: status 200 (PUT, GET), 204 (DELETE),
     * 404, 400 (NH refused the installation), 502 (NH refused this
     * nginx: rights, hub; logged at error), 503 (try again: retry_after)
     * or 500; code and reason say why for an answer.
     */
    ngx_uint_t                  status;
    const char                 *code;
    ngx_str_t                   reason;
    time_t                      retry_after;

    /* private */
    ngx_acs_install_step_e      step;
    ngx_acs_hub_t              *at;            /* the hub asked now */
    u_char                      id[NGX_ACS_INSTALL_ID_LEN];
    ngx_str_t                   body;
    ngx_acs_http_t              http;
    struct curl_slist           lines[5];
    u_char                     *buf;           /* of the lines and URL */
};


/* NGX_OK: op->done runs later, always; NGX_ERROR: it will not */
ngx_int_t ngx_acs_install_start(ngx_acs_install_op_t *op);


#endif /* _NGX_ACS_INSTALL_H_INCLUDED_ */
