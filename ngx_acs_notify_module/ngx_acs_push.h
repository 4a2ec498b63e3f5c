
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The Notification Hubs request of one push (docs/dispatch.md): its
 * payload, rendered once per event and platform, and its headers.
 */


#ifndef _NGX_ACS_PUSH_H_INCLUDED_
#define _NGX_ACS_PUSH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <curl/curl.h>

#include "ngx_acs_render.h"
#include "ngx_acs_engine.h"


/*
 * The payload of the job's event for its platform: NGX_OK, NGX_DECLINED
 * when no payload fits the platform (logged), NGX_ERROR.  The first call
 * for an event and platform renders it in scratch (reset afterwards) and
 * keeps a copy in the delivery's pool for the others.
 */

ngx_int_t ngx_acs_push_body(ngx_acs_job_t *job, ngx_pool_t *scratch,
    ngx_log_t *log, ngx_str_t *body);

#define NGX_ACS_PUSH_LINES  (6 + NGX_ACS_PUSH_HEADERS)


/*
 * The request headers of a transfer, as the list libcurl reads: kept by
 * the caller until the transfer ends, and reused for the next one, so a
 * push allocates nothing for them once the buffer has grown to fit.
 */

typedef struct {
    struct curl_slist           lines[NGX_ACS_PUSH_LINES];
    u_char                     *buf;
    size_t                      size;
} ngx_acs_push_headers_t;


/* the direct send's headers with a current SAS token, or NULL */
struct curl_slist *ngx_acs_push_headers(ngx_acs_job_t *job,
    ngx_acs_push_headers_t *ph, ngx_log_t *log);

void ngx_acs_push_headers_free(ngx_acs_push_headers_t *ph);


#endif /* _NGX_ACS_PUSH_H_INCLUDED_ */
