
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_render.h"
#include "ngx_acs_template.h"
#include "ngx_acs_push.h"


#define NGX_ACS_PUSH_RENDERED  1
#define NGX_ACS_PUSH_TOO_BIG   2


ngx_int_t
ngx_acs_push_body(ngx_acs_job_t *job, ngx_pool_t *scratch, ngx_log_t *log,
    ngx_str_t *body)
{
    u_char                *copy;
    ngx_int_t              rc;
    ngx_str_t              out;
    ngx_acs_template_t    *tpl;
    ngx_acs_delivery_t    *d;
    ngx_acs_platform_t    *p;
    ngx_acs_event_push_t  *item;

    item = job->event;
    d = job->delivery;
    p = ngx_acs_platform(job->dev->platform);

    if (item->state[p->id] == 0) {

        tpl = ngx_acs_template_find(d->templates, item->msg.rule, p);

        if (tpl) {
            rc = ngx_acs_template_render(scratch, tpl, &item->msg, &out);

        } else {
            rc = ngx_acs_render(scratch, p, &item->msg, &out);
        }

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
ngx_acs_push_headers(ngx_acs_job_t *job)
{
    u_char              *p, line[8192];
    ngx_str_t            token;
    ngx_uint_t           i, n;
    ngx_acs_platform_t  *pf;
    struct curl_slist   *list, *next;
    ngx_acs_header_t     h[NGX_ACS_PUSH_HEADERS];

    pf = ngx_acs_platform(job->dev->platform);
    token = ngx_acs_hub_token(job->hub, ngx_time());

    list = NULL;

#define ngx_acs_add(fmt, ...)                                                 \
    p = ngx_snprintf(line, sizeof(line) - 1, fmt, __VA_ARGS__);               \
    *p = '\0';                                                                \
    next = curl_slist_append(list, (char *) line);                            \
    if (next == NULL) {                                                       \
        curl_slist_free_all(list);                                            \
        return NULL;                                                          \
    }                                                                         \
    list = next

    ngx_acs_add("Authorization: %V", &token);
    ngx_acs_add("Content-Type: %V", &pf->content_type);
    ngx_acs_add("ServiceBusNotification-Format: %V", &pf->format);
    ngx_acs_add("ServiceBusNotification-DeviceHandle: %V", &job->dev->handle);
    ngx_acs_add("x-ms-version: %V", &job->hub->api_version);

    n = ngx_acs_render_headers(pf, &job->event->msg, job->dev, h);

    for (i = 0; i < n; i++) {
        ngx_acs_add("%V: %V", &h[i].name, &h[i].value);
    }

    /* no "Expect: 100-continue" round trip */
    ngx_acs_add("%s", "Expect:");

#undef ngx_acs_add

    return list;
}
