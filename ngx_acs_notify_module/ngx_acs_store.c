
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The two stores behind one interface (ngx_acs_store.h):
 *
 *   on disk   the LMDB registry (ngx_acs_registry.c): an operation is a
 *             transaction, done at once; a device is pushed to by its
 *             handle; one worker purges expired registrations in the
 *             background
 *   hub       Notification Hubs installations (ngx_acs_install.c,
 *             docs/registrations.md, section 5): an operation is one or
 *             more requests to the hubs, done when they have answered; a
 *             user's devices are one tag send per platform of the
 *             registry; nothing lists a user's devices or deletes them all
 *             (Notification Hubs finds no installation by user)
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_json.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_install.h"
#include "ngx_acs_stats.h"
#include "ngx_acs_store.h"


#define NGX_ACS_SWEEP_INTERVAL  60000
#define NGX_ACS_SWEEP_BATCH     1000


typedef struct {
    ngx_int_t                 (*check)(ngx_acs_store_op_t *op);
    ngx_int_t                 (*start)(ngx_acs_store_op_t *op);
    ngx_int_t                 (*targets)(ngx_acs_store_t *store,
                                  ngx_str_t *raw_id, ngx_pool_t *pool,
                                  ngx_log_t *log, ngx_array_t *devices);
} ngx_acs_store_ops_t;


struct ngx_acs_store_s {
    ngx_acs_store_ops_t        *ops;
    ngx_acs_registry_t         *registry;      /* on disk, or */
    ngx_acs_install_conf_t     *installs;      /* a hub registry */
};


static ngx_int_t ngx_acs_disk_check(ngx_acs_store_op_t *op);
static ngx_int_t ngx_acs_disk_start(ngx_acs_store_op_t *op);
static ngx_int_t ngx_acs_disk_targets(ngx_acs_store_t *store,
    ngx_str_t *raw_id, ngx_pool_t *pool, ngx_log_t *log,
    ngx_array_t *devices);
static ngx_msec_t ngx_acs_disk_sweep_interval(ngx_acs_registry_t *reg);
static void ngx_acs_disk_sweep(ngx_event_t *ev);

static ngx_int_t ngx_acs_hub_store_check(ngx_acs_store_op_t *op);
static ngx_int_t ngx_acs_hub_store_start(ngx_acs_store_op_t *op);
static void ngx_acs_hub_store_done(ngx_acs_install_op_t *iop);
static ngx_int_t ngx_acs_hub_store_targets(ngx_acs_store_t *store,
    ngx_str_t *raw_id, ngx_pool_t *pool, ngx_log_t *log,
    ngx_array_t *devices);

static size_t ngx_acs_store_devices(void *data, ngx_log_t *log);
static void ngx_acs_store_refuse(ngx_acs_store_op_t *op, ngx_uint_t status,
    const char *code, const char *fmt, ...);


static ngx_acs_store_ops_t  ngx_acs_disk_ops = {
    ngx_acs_disk_check,
    ngx_acs_disk_start,
    ngx_acs_disk_targets
};


static ngx_acs_store_ops_t  ngx_acs_hub_store_ops = {
    ngx_acs_hub_store_check,
    ngx_acs_hub_store_start,
    ngx_acs_hub_store_targets
};


static ngx_event_t          ngx_acs_sweep_event;
static ngx_connection_t     ngx_acs_sweep_conn;
static ngx_acs_registry_t  *ngx_acs_swept;


char *
ngx_acs_store_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_store_t **store)
{
    ngx_acs_store_t  *s;

    s = ngx_pcalloc(cf->pool, sizeof(ngx_acs_store_t));
    if (s == NULL) {
        return NGX_CONF_ERROR;
    }

    *store = s;

    if (args[0].len > 4 && ngx_strncmp(args[0].data, "hub=", 4) == 0) {
        s->ops = &ngx_acs_hub_store_ops;
        return ngx_acs_install_create(cf, args, nargs, &s->installs);
    }

    if (ngx_strlchr(args[0].data, args[0].data + args[0].len, '=')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_registry: \"%V\" is taken for a "
                           "parameter, not a directory; the directory comes "
                           "first, or hub=NAME for a hub registry",
                           &args[0]);
        return NGX_CONF_ERROR;
    }

    s->ops = &ngx_acs_disk_ops;

    return ngx_acs_registry_create(cf, args, nargs, &s->registry);
}


ngx_int_t
ngx_acs_store_init_conf(ngx_conf_t *cf, ngx_acs_store_t *store,
    ngx_array_t *hubs)
{
    if (store->registry) {
        return ngx_acs_registry_check(store->registry, cf->log);
    }

    return ngx_acs_install_init_conf(cf, store->installs, hubs);
}


/*
 * With a hub registry, pushes go where the installations are: the
 * location's hub is the registry's, and VoIP pushes go to the registry's
 * VoIP hub.
 */

ngx_int_t
ngx_acs_store_hubs(ngx_conf_t *cf, ngx_acs_store_t *store,
    ngx_acs_hub_t *hub, ngx_acs_hub_t **voip_hub)
{
    ngx_acs_install_conf_t  *ic = store->installs;

    if (ic == NULL) {
        return NGX_OK;
    }

    if (hub != ic->hub) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_eventgrid: with acs_notify_registry "
                           "hub=%V, pushes go through hub=%V, not \"%V\"",
                           &ic->hub->name, &ic->hub->name, &hub->name);
        return NGX_ERROR;
    }

    if (*voip_hub == NULL) {
        *voip_hub = ic->voip_hub;

    } else if (*voip_hub != ic->voip_hub) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_eventgrid: with acs_notify_registry "
                           "hub=%V, VoIP pushes go through the registry's "
                           "voip_hub, not \"%V\"", &ic->hub->name,
                           &(*voip_hub)->name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_store_init_module(ngx_cycle_t *cycle, ngx_acs_store_t *store)
{
    if (store->registry == NULL) {
        return NGX_OK;
    }

    return ngx_acs_registry_init_module(cycle, store->registry);
}


ngx_int_t
ngx_acs_store_init_process(ngx_cycle_t *cycle, ngx_acs_store_t *store)
{
    /* the status page asks the store how many devices it holds */
    ngx_acs_stats_devices(ngx_acs_store_devices, store);

    if (store->registry == NULL) {
        return NGX_OK;
    }

    if (ngx_acs_registry_init_process(cycle, store->registry) != NGX_OK) {
        return NGX_ERROR;
    }

    /* one worker purges expired registrations in the background */

    if (ngx_process == NGX_PROCESS_WORKER && ngx_worker != 0) {
        return NGX_OK;
    }

    ngx_acs_worker_event(&ngx_acs_sweep_event, ngx_acs_disk_sweep,
                         &ngx_acs_sweep_conn, cycle->log);
    ngx_acs_sweep_event.cancelable = 1;
    ngx_acs_swept = store->registry;

    ngx_add_timer(&ngx_acs_sweep_event,
                  ngx_acs_disk_sweep_interval(store->registry));

    return NGX_OK;
}


void
ngx_acs_store_exit_process(ngx_acs_store_t *store)
{
    if (store->registry) {
        ngx_acs_registry_exit_process(store->registry);
    }
}


ngx_int_t
ngx_acs_store_check(ngx_acs_store_op_t *op)
{
    return op->store->ops->check(op);
}


ngx_int_t
ngx_acs_store_start(ngx_acs_store_op_t *op)
{
    return op->store->ops->start(op);
}


ngx_int_t
ngx_acs_store_targets(ngx_acs_store_t *store, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices)
{
    return store->ops->targets(store, raw_id, pool, log, devices);
}


static size_t
ngx_acs_store_devices(void *data, ngx_log_t *log)
{
    ngx_acs_store_t  *store = data;

    size_t  n;

    if (store->registry == NULL
        || ngx_acs_registry_count(store->registry, log, &n) != NGX_OK)
    {
        return 0;
    }

    return n;
}


ngx_acs_registry_t *
ngx_acs_store_registry(ngx_acs_store_t *store)
{
    return store ? store->registry : NULL;
}


/* on disk: anything may be asked */

static ngx_int_t
ngx_acs_disk_check(ngx_acs_store_op_t *op)
{
    return NGX_OK;
}


static ngx_int_t
ngx_acs_disk_start(ngx_acs_store_op_t *op)
{
    ngx_int_t            rc;
    ngx_uint_t           created;
    ngx_acs_registry_t  *reg;

    reg = op->store->registry;

    switch (op->kind) {

    case NGX_ACS_STORE_PUT:

        op->dev.expires = ngx_time() + (time_t) ((op->ttl == -1)
                                                 ? ngx_acs_registry_ttl(reg)
                                                 : op->ttl);

        rc = ngx_acs_registry_put(reg, &op->raw_id, &op->dev, op->log,
                                  &created);

        switch (rc) {

        case NGX_OK:
            op->status = created ? NGX_HTTP_CREATED : NGX_HTTP_OK;
            break;

        case NGX_BUSY:
            ngx_acs_store_refuse(op, NGX_HTTP_CONFLICT, "TooManyDevices",
                                 "the user has the maximum number of "
                                 "devices already");
            break;

        /* the registry logged the episode at crit */

        case NGX_ABORT:
            ngx_acs_store_refuse(op, NGX_HTTP_INSUFFICIENT_STORAGE,
                                 "InsufficientStorage",
                                 "the registry is full");
            break;

        case NGX_AGAIN:
            ngx_acs_store_refuse(op, NGX_HTTP_INSUFFICIENT_STORAGE,
                                 "DiskFull", "the registry's disk is full; "
                                 "nothing was written, retry later");
            break;

        default:
            op->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_ACS_STORE_GET:

        rc = ngx_acs_registry_get(reg, &op->raw_id, &op->device_id,
                                  op->pool, op->log, &op->dev);

        if (rc == NGX_DECLINED) {
            ngx_acs_store_refuse(op, NGX_HTTP_NOT_FOUND, "NotFound",
                                 "no such device");

        } else {
            op->status = (rc == NGX_OK) ? NGX_HTTP_OK
                                        : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_ACS_STORE_LIST:

        if (ngx_array_init(&op->devices, op->pool, 4,
                           sizeof(ngx_acs_device_t))
            != NGX_OK
            || ngx_acs_registry_list(reg, &op->raw_id, op->pool, op->log,
                                     &op->devices)
               != NGX_OK)
        {
            op->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
            break;
        }

        op->status = NGX_HTTP_OK;
        break;

    case NGX_ACS_STORE_DELETE:

        rc = ngx_acs_registry_delete(reg, &op->raw_id,
                                     op->device_id.len ? &op->device_id
                                                       : NULL,
                                     op->log);

        if (rc == NGX_ERROR) {
            op->status = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else if (rc == NGX_AGAIN) {
            /* a write where the disk's room could not be kept ahead */
            ngx_acs_store_refuse(op, NGX_HTTP_INSUFFICIENT_STORAGE,
                                 "DiskFull", "the registry's disk is full; "
                                 "retry later");

        } else if (rc == NGX_DECLINED && op->device_id.len) {
            ngx_acs_store_refuse(op, NGX_HTTP_NOT_FOUND, "NotFound",
                                 "no such device");

        } else {
            op->status = NGX_HTTP_NO_CONTENT;
        }

        break;
    }

    op->done(op);

    return NGX_OK;
}


/* the devices of the user, each pushed to by its own handle */

static ngx_int_t
ngx_acs_disk_targets(ngx_acs_store_t *store, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices)
{
    return ngx_acs_registry_list(store->registry, raw_id, pool, log,
                                 devices);
}


/* a minute, or half the default TTL when that is shorter */

static ngx_msec_t
ngx_acs_disk_sweep_interval(ngx_acs_registry_t *reg)
{
    time_t  ttl;

    ttl = ngx_acs_registry_ttl(reg);

    if (ttl >= 2 * NGX_ACS_SWEEP_INTERVAL / 1000) {
        return NGX_ACS_SWEEP_INTERVAL;
    }

    return (ngx_msec_t) ttl * 500;
}


static void
ngx_acs_disk_sweep(ngx_event_t *ev)
{
    ngx_uint_t  purged;

    if (ngx_exiting) {
        return;
    }

    if (ngx_acs_registry_sweep(ngx_acs_swept, ev->log, NGX_ACS_SWEEP_BATCH,
                               &purged)
        == NGX_OK
        && purged)
    {
        ngx_log_error(NGX_LOG_INFO, ev->log, 0,
                      "acs_notify_registry: purged %ui expired "
                      "registrations", purged);
    }

    /* more to purge: go on soon, without holding the worker for long */

    ngx_add_timer(ev, (purged == NGX_ACS_SWEEP_BATCH)
                      ? 100 : ngx_acs_disk_sweep_interval(ngx_acs_swept));
}


/*
 * A hub registry cannot list or delete a user's devices; a user's raw id
 * must fit a tag.  The installation's operation is made here.
 */

static ngx_int_t
ngx_acs_hub_store_check(ngx_acs_store_op_t *op)
{
    ngx_int_t              rc;
    ngx_acs_install_op_t  *iop;

    if (op->device_id.len == 0) {
        ngx_acs_store_refuse(op, NGX_HTTP_NOT_IMPLEMENTED, "NotImplemented",
                             "a hub registry cannot %s a user's devices: "
                             "Notification Hubs finds no installation by "
                             "user (docs/registrations.md, section 5)",
                             (op->kind == NGX_ACS_STORE_LIST)
                             ? "list" : "delete all");
        return NGX_DECLINED;
    }

    iop = ngx_pcalloc(op->pool, sizeof(ngx_acs_install_op_t));
    if (iop == NULL) {
        op->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    rc = ngx_acs_install_tag(op->pool, &op->raw_id, &iop->tag);

    if (rc == NGX_DECLINED) {
        ngx_acs_store_refuse(op, NGX_HTTP_BAD_REQUEST, "InvalidRawId",
                             "the raw id, as a Notification Hubs tag, is "
                             "%uz characters, more than %d", iop->tag.len,
                             NGX_ACS_TAG_MAX);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        op->status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_DECLINED;
    }

    op->ctx = iop;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_hub_store_start(ngx_acs_store_op_t *op)
{
    ngx_acs_platform_t      *p;
    ngx_acs_install_op_t    *iop;
    ngx_acs_install_conf_t  *ic;

    ic = op->store->installs;
    iop = op->ctx;

    switch (op->kind) {

    case NGX_ACS_STORE_PUT:

        if (op->ttl != -1) {
            ngx_acs_store_refuse(op, NGX_HTTP_BAD_REQUEST, "InvalidTtl",
                                 "\"ttlSeconds\" is not supported by a hub "
                                 "registry: an installation lives until it "
                                 "is deleted, or until Notification Hubs "
                                 "finds its handle dead");
            op->done(op);
            return NGX_OK;
        }

        p = ngx_acs_platform(op->dev.platform);

        if (!(ic->platforms & (1 << p->id))) {
            ngx_acs_store_refuse(op, NGX_HTTP_BAD_REQUEST,
                                 "InvalidPlatform", "platform %V is not one "
                                 "of the registry's platforms=", &p->name);
            op->done(op);
            return NGX_OK;
        }

        iop->kind = NGX_ACS_INSTALL_PUT;
        iop->dev = op->dev;
        break;

    case NGX_ACS_STORE_GET:
        iop->kind = NGX_ACS_INSTALL_GET;
        break;

    case NGX_ACS_STORE_DELETE:
        iop->kind = NGX_ACS_INSTALL_DELETE;
        break;

    case NGX_ACS_STORE_LIST:
        /* refused by the check */
        ngx_log_error(NGX_LOG_ALERT, op->log, 0,
                      "acs_notify: a hub registry asked to list devices");
        return NGX_ERROR;
    }

    iop->conf = ic;
    iop->raw_id = op->raw_id;
    iop->dev.device_id = op->device_id;
    iop->pool = op->pool;
    iop->log = op->log;
    iop->done = ngx_acs_hub_store_done;
    iop->data = op;

    return ngx_acs_install_start(iop);
}


static void
ngx_acs_hub_store_done(ngx_acs_install_op_t *iop)
{
    ngx_acs_store_op_t  *op = iop->data;

    op->status = iop->status;
    op->code = iop->code;
    op->reason = iop->reason;
    op->retry_after = iop->retry_after;
    op->dev = iop->dev;

    op->done(op);
}


/* a tag send per platform of the registry */

static ngx_int_t
ngx_acs_hub_store_targets(ngx_acs_store_t *store, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices)
{
    ngx_int_t  rc;

    rc = ngx_acs_install_devices(store->installs, pool, raw_id, devices);

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "acs_notify: no push to \"%V\": its raw id is too long "
                      "for a Notification Hubs tag",
                      ngx_acs_log_str(pool, raw_id));
        return NGX_OK;
    }

    return rc;
}


static void
ngx_acs_store_refuse(ngx_acs_store_op_t *op, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    u_char   *last, buf[NGX_MAX_ERROR_STR];
    va_list   args;

    op->status = status;
    op->code = code;

    va_start(args, fmt);
    last = ngx_vslprintf(buf, buf + sizeof(buf), fmt, args);
    va_end(args);

    op->reason.len = last - buf;
    op->reason.data = ngx_pnalloc(op->pool, op->reason.len);

    if (op->reason.data == NULL) {
        op->reason.len = 0;
        return;
    }

    ngx_memcpy(op->reason.data, buf, op->reason.len);
}
