
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * A call's payload and headers say how long it may live where the
 * platform has a way to (ngx_acs_render.c): its ring time left when it
 * starts.  A payload that says it (FCM v1's android.ttl) is rendered again
 * when the seconds left changed since the kept one was.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_template.h"
#include "ngx_acs_push.h"


#define NGX_ACS_PUSH_RENDERED  1
#define NGX_ACS_PUSH_TOO_BIG   2


static void ngx_acs_push_expiry(ngx_acs_job_t *job, ngx_acs_expiry_t *exp);


ngx_int_t
ngx_acs_push_body(ngx_acs_job_t *job, ngx_pool_t *scratch, ngx_log_t *log,
    ngx_str_t *body)
{
    u_char                *copy;
    ngx_int_t              rc;
    ngx_str_t              out;
    ngx_acs_expiry_t       exp;
    ngx_acs_template_t    *tpl;
    ngx_acs_delivery_t    *d;
    ngx_acs_platform_t    *p;
    ngx_acs_event_push_t  *item;

    item = job->event;
    d = job->delivery;
    p = ngx_acs_platform(job->dev->platform);

    ngx_acs_push_expiry(job, &exp);

    if (item->state[p->id] == NGX_ACS_PUSH_RENDERED && p->expiry_in_body
        && item->ttl[p->id] != exp.ttl
        && ngx_acs_template_find(d->templates, item->msg.rule, p) == NULL)
    {
        /* the kept payload says another time left */
        item->state[p->id] = 0;
    }

    if (item->state[p->id] == 0) {

        tpl = ngx_acs_template_find(d->templates, item->msg.rule, p);

        if (tpl) {
            rc = ngx_acs_template_render(scratch, tpl, &item->msg, &out);

        } else {
            rc = ngx_acs_render(scratch, p, &item->msg, exp.ttl, &out);
        }

        item->ttl[p->id] = exp.ttl;

        if (rc == NGX_OK) {
            copy = ngx_pnalloc(d->pool, out.len);
            if (copy == NULL) {
                rc = NGX_ERROR;

            } else {
                ngx_memcpy(copy, out.data, out.len);
                item->body[p->id].data = copy;
                item->body[p->id].len = out.len;
                item->state[p->id] = NGX_ACS_PUSH_RENDERED;
            }

        } else if (rc == NGX_DECLINED) {
            item->state[p->id] = NGX_ACS_PUSH_TOO_BIG;
        }

        ngx_reset_pool(scratch);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        ngx_log_debug4(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify: event \"%V\" for %V: %s payload, %uz "
                       "bytes", &item->log_id, &p->name,
                       tpl ? "template" : "built-in", item->body[p->id].len);
    }

    if (item->state[p->id] == NGX_ACS_PUSH_TOO_BIG) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "acs_notify: no push of event \"%V\" for device "
                      "\"%V\" (%V): the payload does not fit the "
                      "platform's limit", &item->log_id,
                      &job->dev->device_id, &p->name);
        return NGX_DECLINED;
    }

    *body = item->body[p->id];

    return NGX_OK;
}


struct curl_slist *
ngx_acs_push_headers(ngx_acs_job_t *job, ngx_acs_push_headers_t *ph,
    ngx_log_t *log)
{
    u_char              *p;
    size_t               size;
    ngx_uint_t           n;
    ngx_acs_expiry_t     exp;
    ngx_acs_platform_t  *pf;
    ngx_acs_header_t     h[NGX_ACS_PUSH_LINES];

    pf = ngx_acs_platform(job->dev->platform);

    ngx_str_set(&h[0].name, "Authorization");
    h[0].value = ngx_acs_hub_token(job->hub, ngx_time());
    ngx_str_set(&h[1].name, "Content-Type");
    h[1].value = pf->content_type;
    ngx_str_set(&h[2].name, "ServiceBusNotification-Format");
    h[2].value = pf->format;
    h[3].name = *ngx_acs_hub_target(job->dev->target);
    h[3].value = job->dev->handle;
    ngx_str_set(&h[4].name, "x-ms-version");
    h[4].value = job->hub->api_version;

    ngx_acs_push_expiry(job, &exp);

    /* the values point into exp: copied into ph before it goes */

    n = 5 + ngx_acs_render_headers(pf, &job->event->msg, job->dev, &exp,
                                   &h[5]);

    /* an empty "Expect:" spares the "100-continue" round trip */
    ngx_str_set(&h[n].name, "Expect");
    ngx_str_null(&h[n].value);
    n++;

    size = ngx_acs_curl_headers_size(h, n);

    if (size > ph->size) {
        size = ngx_max(size, 1024);

        p = ngx_alloc(size, log);
        if (p == NULL) {
            return NULL;
        }

        if (ph->buf) {
            ngx_free(ph->buf);
        }

        ph->buf = p;
        ph->size = size;
    }

    return ngx_acs_curl_headers(h, n, ph->lines, ph->buf);
}


void
ngx_acs_push_headers_free(ngx_acs_push_headers_t *ph)
{
    if (ph->buf) {
        ngx_free(ph->buf);
        ph->buf = NULL;
        ph->size = 0;
    }
}


/* the ring time left of a call push, as it starts; none for others */

static void
ngx_acs_push_expiry(ngx_acs_job_t *job, ngx_acs_expiry_t *exp)
{
    ngx_msec_int_t  left;

    if (job->event->expires == 0) {
        exp->ttl = -1;
        exp->until = 0;
        return;
    }

    left = (ngx_msec_int_t) (job->event->expires - ngx_current_msec);
    left = ngx_max(left, 0);

    exp->ttl = (time_t) (left / 1000);
    exp->until = ngx_time() + (time_t) ((left + 999) / 1000);
}
