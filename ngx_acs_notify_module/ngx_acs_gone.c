
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_gone.h"


typedef struct {
    ngx_acs_registry_t         *registry;
    ngx_log_t                  *log;
    ngx_array_t                *gone;          /* of ngx_acs_gone_t */
    ngx_uint_t                  next;          /* the first not removed */
    ngx_pool_t                 *pool;
    ngx_event_t                 flush;
    ngx_connection_t            dummy;
} ngx_acs_gone_list_t;


static void ngx_acs_gone_flush(ngx_event_t *ev);
static void ngx_acs_gone_remove(ngx_uint_t all);


static ngx_acs_gone_list_t  ngx_acs_gone;


ngx_int_t
ngx_acs_gone_init(ngx_cycle_t *cycle, ngx_acs_registry_t *reg)
{
    ngx_acs_gone_list_t  *g = &ngx_acs_gone;

    ngx_memzero(g, sizeof(ngx_acs_gone_list_t));

    if (reg == NULL) {
        return NGX_OK;
    }

    g->pool = ngx_create_pool(4096, cycle->log);
    if (g->pool == NULL) {
        return NGX_ERROR;
    }

    g->registry = reg;
    g->log = cycle->log;

    ngx_acs_worker_event(&g->flush, ngx_acs_gone_flush, &g->dummy,
                         cycle->log);

    return NGX_OK;
}


void
ngx_acs_gone_add(ngx_str_t *raw_id, ngx_str_t *handle)
{
    ngx_acs_gone_t       *gone;
    ngx_acs_gone_list_t  *g = &ngx_acs_gone;

    if (g->pool == NULL) {
        return;
    }

    if (g->gone == NULL) {
        g->gone = ngx_array_create(g->pool, 16, sizeof(ngx_acs_gone_t));
        if (g->gone == NULL) {
            return;
        }
    }

    gone = ngx_array_push(g->gone);
    if (gone == NULL) {
        return;
    }

    gone->raw_id.len = raw_id->len;
    gone->raw_id.data = ngx_pstrdup(g->pool, raw_id);
    gone->handle.len = handle->len;
    gone->handle.data = ngx_pstrdup(g->pool, handle);

    if (gone->raw_id.data == NULL || gone->handle.data == NULL) {
        /* the handle goes at its next 410 */
        g->gone->nelts--;
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, g->log, 0,
                   "acs_notify: handle %*s... to be removed",
                   ngx_min(handle->len, 8), handle->data);

    if (!g->flush.posted) {
        ngx_post_event(&g->flush, &ngx_posted_next_events);
    }
}


void
ngx_acs_gone_exit(void)
{
    ngx_acs_gone_list_t  *g = &ngx_acs_gone;

    if (g->pool == NULL) {
        return;
    }

    ngx_acs_gone_remove(1);

    if (g->flush.posted) {
        ngx_delete_posted_event(&g->flush);
    }

    g->gone = NULL;

    ngx_destroy_pool(g->pool);
    g->pool = NULL;
}


/* one transaction a turn; all of them when the worker exits */

static void
ngx_acs_gone_flush(ngx_event_t *ev)
{
    ngx_acs_gone_remove(ngx_exiting);
}


static void
ngx_acs_gone_remove(ngx_uint_t all)
{
    ngx_uint_t            done;
    ngx_acs_gone_list_t  *g = &ngx_acs_gone;

    if (g->gone == NULL) {
        return;
    }

    do {
        if (ngx_acs_registry_remove_handles(g->registry,
                                            (ngx_acs_gone_t *) g->gone->elts
                                            + g->next,
                                            g->gone->nelts - g->next,
                                            g->log, &done)
            != NGX_OK)
        {
            /* logged; the handles go at their next 410 */
            done = g->gone->nelts - g->next;
        }

        g->next += done;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, g->log, 0,
                       "acs_notify: %ui gone handles removed, %ui left",
                       done, g->gone->nelts - g->next);

    } while (all && done && g->next < g->gone->nelts);

    if (g->next < g->gone->nelts) {
        ngx_post_event(&g->flush, &ngx_posted_next_events);
        return;
    }

    g->gone = NULL;
    g->next = 0;
    ngx_reset_pool(g->pool);
}
