
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Notification Hubs links: connection strings, SAS tokens, how a request
 * goes, and what an answer means.  The statuses of the hubs are read here
 * alone: pushes, installations and the status page act on the verdict
 * and the answer's class.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_hub.h"


static char  *ngx_acs_answer_names[] = {
    [NGX_ACS_ANSWER_2XX] = "2xx",
    [NGX_ACS_ANSWER_400] = "400",
    [NGX_ACS_ANSWER_401] = "401",
    [NGX_ACS_ANSWER_403] = "403",
    [NGX_ACS_ANSWER_404] = "404",
    [NGX_ACS_ANSWER_410] = "410",
    [NGX_ACS_ANSWER_413] = "413",
    [NGX_ACS_ANSWER_429] = "429",
    [NGX_ACS_ANSWER_4XX] = "4xx",
    [NGX_ACS_ANSWER_5XX] = "5xx",
    [NGX_ACS_ANSWER_ERROR] = "error"
};

/* the header of each target of a push */

static ngx_str_t  ngx_acs_hub_targets[] = {
    [NGX_ACS_TARGET_HANDLE] =
        ngx_string("ServiceBusNotification-DeviceHandle"),
    [NGX_ACS_TARGET_TAG] = ngx_string("ServiceBusNotification-Tags")
};

/* a header for every target, or this does not compile */
typedef char  ngx_acs_hub_targets_all[
    (sizeof(ngx_acs_hub_targets) / sizeof(ngx_str_t) == NGX_ACS_TARGETS)
    ? 1 : -1];


/* a name for every answer, or this does not compile */
typedef char  ngx_acs_answer_names_all[
    (sizeof(ngx_acs_answer_names) / sizeof(char *) == NGX_ACS_ANSWERS)
    ? 1 : -1];


char *
ngx_acs_hub_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_hub_t *hub)
{
    u_char      *p, *last;
    ngx_int_t    n;
    ngx_str_t    v, cs, endpoint, *direct, *tag;
    ngx_uint_t        i;
    const char       *err;
    ngx_file_info_t   fi;

    ngx_str_null(&cs);
    ngx_str_set(&hub->api_version, "2020-06");
    hub->max_connections = NGX_ACS_HUB_CONNECTIONS;
    hub->http2 = NGX_ACS_HUB_HTTP2_DEFAULT;
    hub->timeout = 10000;

    for (i = 0; i < nargs; i++) {

        if (ngx_acs_conf_param(&args[i], "connection_string=", &v)) {

            if (ngx_acs_conf_value(cf, &v, &cs) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_acs_conf_param(&args[i], "hub=", &hub->hub)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "api_version=", &hub->api_version))
        {

            for (p = hub->api_version.data;
                 p < hub->api_version.data + hub->api_version.len;
                 p++)
            {
                if (!(isdigit(*p) || *p == '-')) {
                    break;
                }
            }

            if (hub->api_version.len < 7 || hub->api_version.len > 10
                || p != hub->api_version.data + hub->api_version.len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_hub \"%V\": api_version must "
                                   "look like 2020-06", &hub->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_acs_conf_param(&args[i], "connect_to=", &v)) {

            /* the port follows the last ":", IPv6 hosts are in brackets */

            for (p = v.data + v.len; p > v.data && p[-1] != ':'; p--) {
                /* void */
            }

            n = (p > v.data + 1) ? ngx_atoi(p, v.data + v.len - p)
                                 : NGX_ERROR;

            if (n < 1 || n > 65535) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_hub \"%V\": connect_to must "
                                   "be HOST:PORT or [IPV6]:PORT",
                                   &hub->name);
                return NGX_CONF_ERROR;
            }

            hub->connect_to = v;
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "ca_file=", &hub->ca_file)) {

            if (ngx_conf_full_name(cf->cycle, &hub->ca_file, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_acs_conf_param(&args[i], "max_connections=", &v)) {
            n = ngx_atoi(v.data, v.len);
            if (n < 1 || n > 8192) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_hub \"%V\": max_connections "
                                   "must be 1 to 8192", &hub->name);
                return NGX_CONF_ERROR;
            }

            hub->max_connections = n;
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "http2=", &v)) {

            if (v.len == 2 && ngx_strncmp(v.data, "on", 2) == 0) {
                hub->http2 = 1;

            } else if (v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0) {
                hub->http2 = 0;

            } else {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_hub \"%V\": http2 must be on "
                                   "or off", &hub->name);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_acs_conf_param(&args[i], "timeout=", &v)) {

            n = ngx_parse_time(&v, 0);
            if (n == NGX_ERROR || n < 100 || n > 60000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_hub \"%V\": timeout must be "
                                   "100ms to 60s", &hub->name);
                return NGX_CONF_ERROR;
            }

            hub->timeout = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_hub \"%V\": invalid parameter \"%V\"",
                           &hub->name, &args[i]);
        return NGX_CONF_ERROR;
    }

    if (cs.len == 0 || hub->hub.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_hub \"%V\" needs connection_string= "
                           "and hub=", &hub->name);
        return NGX_CONF_ERROR;
    }

    for (p = hub->hub.data; p < hub->hub.data + hub->hub.len; p++) {
        if (!(isalnum(*p) || *p == '-' || *p == '_' || *p == '.')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_hub \"%V\": invalid hub name "
                               "\"%V\"", &hub->name, &hub->hub);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_acs_connection_string(&cs, &endpoint, &hub->key_name, &hub->key,
                                  &err)
        != NGX_OK)
    {
        /* the message never quotes the string: it holds the key */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_hub \"%V\": invalid connection string: "
                           "%s", &hub->name, err);
        return NGX_CONF_ERROR;
    }

    /* sb://{namespace}.servicebus.windows.net/ -> the host */

    p = endpoint.data + 5;
    last = endpoint.data + endpoint.len;

    while (last > p && last[-1] == '/') {
        last--;
    }

    if (last == p || ngx_strlchr(p, last, '/') != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_hub \"%V\": invalid connection string: "
                           "Endpoint is not sb://NAMESPACE.servicebus."
                           "windows.net/", &hub->name);
        return NGX_CONF_ERROR;
    }

    hub->host.len = last - p;
    hub->host.data = ngx_pnalloc(cf->pool, hub->host.len);
    if (hub->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_strlow(hub->host.data, p, hub->host.len);

    hub->resource.len = sizeof("https:///") - 1 + hub->host.len
                        + hub->hub.len;

    if (hub->resource.len > NGX_ACS_RESOURCE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_hub \"%V\": namespace and hub names "
                           "too long", &hub->name);
        return NGX_CONF_ERROR;
    }
    hub->resource.data = ngx_pnalloc(cf->pool, hub->resource.len);

    direct = &hub->urls[NGX_ACS_TARGET_HANDLE];
    tag = &hub->urls[NGX_ACS_TARGET_TAG];

    direct->len = hub->resource.len
                  + sizeof("/messages/?api-version=&direct") - 1
                  + hub->api_version.len;
    direct->data = ngx_pnalloc(cf->pool, direct->len + 1);

    tag->len = direct->len - (sizeof("&direct") - 1);
    tag->data = ngx_pnalloc(cf->pool, tag->len + 1);

    if (hub->resource.data == NULL || direct->data == NULL
        || tag->data == NULL)
    {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(hub->resource.data, "https://%V/%V", &hub->host, &hub->hub);

    /* "direct" must be there: without it NH broadcasts to every device */

    ngx_sprintf(direct->data, "%V/messages/?api-version=%V&direct%Z",
                &hub->resource, &hub->api_version);

    /* a send to the installations of a tag expression (a hub registry) */

    ngx_sprintf(tag->data, "%V/messages/?api-version=%V%Z",
                &hub->resource, &hub->api_version);

    if (hub->connect_to.len) {
        /* curl's CONNECT_TO: HOST:443:CONNECT-HOST:CONNECT-PORT */
        v = hub->connect_to;
        hub->connect_to.len = hub->host.len + sizeof(":443:") - 1 + v.len;
        hub->connect_to.data = ngx_pnalloc(cf->pool,
                                           hub->connect_to.len + 1);
        if (hub->connect_to.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(hub->connect_to.data, "%V:443:%V%Z", &hub->host, &v);
    }

    if (hub->ca_file.len) {
        p = ngx_pnalloc(cf->pool, hub->ca_file.len + 1);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_cpystrn(p, hub->ca_file.data, hub->ca_file.len + 1);
        hub->ca_file.data = p;

        if (ngx_file_info(p, &fi) == NGX_FILE_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                               "acs_notify_hub \"%V\": ca_file \"%s\"",
                               &hub->name, p);
            return NGX_CONF_ERROR;
        }
    }

    hub->token = ngx_pnalloc(cf->pool,
                             ngx_acs_sas_len(&hub->resource, &hub->key_name));
    if (hub->token == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_str_t
ngx_acs_hub_token(ngx_acs_hub_t *hub, time_t now)
{
    u_char     *last;
    ngx_str_t   token;

    if (hub->token_len == 0 || hub->token_expires - now < NGX_ACS_SAS_RENEW) {
        hub->token_expires = now + NGX_ACS_SAS_LIFETIME;

        last = ngx_acs_sas(hub->token, &hub->resource, &hub->key_name,
                           &hub->key, hub->token_expires);
        hub->token_len = last - hub->token;

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "acs_notify: SAS token of hub \"%V\" signed, valid "
                       "until %T", &hub->name, hub->token_expires);
    }

    token.data = hub->token;
    token.len = hub->token_len;

    return token;
}


void
ngx_acs_hub_token_reset(ngx_acs_hub_t *hub)
{
    hub->token_len = 0;
}


ngx_str_t *
ngx_acs_hub_target(ngx_acs_target_e target)
{
    return &ngx_acs_hub_targets[target];
}


void
ngx_acs_hub_transport(ngx_acs_hub_t *hub, ngx_acs_http_t *h)
{
    h->ca_file = hub->ca_file.len ? (const char *) hub->ca_file.data : NULL;
    h->connect_to = hub->connect_to_list;
    h->http2 = hub->http2;
    h->pipewait = hub->http2;
    h->timeout = hub->timeout;
}


ngx_acs_verdict_e
ngx_acs_hub_verdict(ngx_acs_http_t *h)
{
    /*
     * An error after a final status (an HTTP/2 peer may answer before it
     * read the body, then reset the stream, and libcurl reports
     * CURLE_HTTP2_STREAM): the hub decided, the status says what
     */

    if (h->result != CURLE_OK && h->status < 200) {

        switch (h->result) {

        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
            return NGX_ACS_VERDICT_UNREACHABLE;

        case CURLE_OPERATION_TIMEDOUT:
            return h->connected ? NGX_ACS_VERDICT_FAILED
                                : NGX_ACS_VERDICT_UNREACHABLE;

        default:
            return NGX_ACS_VERDICT_FAILED;
        }
    }

    if (h->status >= 200 && h->status < 300) {
        return NGX_ACS_VERDICT_SENT;
    }

    switch (h->status) {

    case 410:
        return NGX_ACS_VERDICT_GONE;

    case 401:
        return NGX_ACS_VERDICT_RENEW;

    case 403:
        /* the quota answer of older API versions has a Retry-After */
        return h->retry_after ? NGX_ACS_VERDICT_THROTTLED
                              : NGX_ACS_VERDICT_DENIED;

    case 404:
        return NGX_ACS_VERDICT_ABSENT;

    case 429:
    case 503:
        return NGX_ACS_VERDICT_THROTTLED;

    case 408:
        return NGX_ACS_VERDICT_FAILED;

    default:
        return (h->status >= 500) ? NGX_ACS_VERDICT_FAILED
                                  : NGX_ACS_VERDICT_REFUSED;
    }
}


void
ngx_acs_hub_why(ngx_acs_http_t *h, u_char *buf, size_t size)
{
    if (h->result != CURLE_OK && h->status < 200) {
        ngx_cpystrn(buf, (u_char *) (h->error[0]
                                     ? h->error
                                     : curl_easy_strerror(h->result)),
                    size);
        return;
    }

    ngx_snprintf(buf, size - 1, "HTTP %l%s%Z", h->status,
                 (h->status == 429) ? " throttled"
                 : (h->status == 403) ? " quota" : "");
}


void
ngx_acs_hub_detail(ngx_acs_http_t *h, ngx_str_t *detail)
{
    u_char  *p, *q, *last;

    if (h->response) {
        detail->data = h->response;
        detail->len = h->response_len;

    } else {
        detail->data = h->detail;
        detail->len = h->detail_len;
    }

    /* NH's <Error><Code>..</Code><Detail>..</Detail></Error> */

    last = detail->data + detail->len;
    p = ngx_strlcasestrn(detail->data, last, (u_char *) "<detail>", 8 - 1);

    if (p) {
        p += 8;
        q = ngx_strlcasestrn(p, last, (u_char *) "</detail>", 9 - 1);
        detail->data = p;
        detail->len = (q ? q : last) - p;
    }

    detail->len = ngx_min(detail->len, NGX_ACS_HUB_DETAIL_MAX);

    while (detail->len && (detail->data[detail->len - 1] == '\n'
                           || detail->data[detail->len - 1] == '\r'))
    {
        detail->len--;
    }
}


ngx_acs_answer_e
ngx_acs_hub_answer(ngx_acs_http_t *h)
{
    if (h->status < 200) {
        return NGX_ACS_ANSWER_ERROR;
    }

    switch (h->status) {

    case 400:
        return NGX_ACS_ANSWER_400;

    case 401:
        return NGX_ACS_ANSWER_401;

    case 403:
        return NGX_ACS_ANSWER_403;

    case 404:
        return NGX_ACS_ANSWER_404;

    case 410:
        return NGX_ACS_ANSWER_410;

    case 413:
        return NGX_ACS_ANSWER_413;

    case 429:
        return NGX_ACS_ANSWER_429;

    default:
        return (h->status < 300) ? NGX_ACS_ANSWER_2XX
               : (h->status >= 500) ? NGX_ACS_ANSWER_5XX
               : NGX_ACS_ANSWER_4XX;
    }
}


char *
ngx_acs_hub_answer_name(ngx_acs_answer_e answer)
{
    return ngx_acs_answer_names[answer];
}


ngx_uint_t
ngx_acs_hub_conns_cap(ngx_cycle_t *cycle)
{
    ngx_uint_t     cap;
    struct rlimit  rlmt;

    /* half of the worker's connections, a quarter of its descriptors */

    cap = cycle->connection_n / 2;

    if (getrlimit(RLIMIT_NOFILE, &rlmt) == 0
        && rlmt.rlim_cur != RLIM_INFINITY)
    {
        cap = ngx_min(cap, (ngx_uint_t) rlmt.rlim_cur / 4);
    }

    return ngx_max(cap, 1);
}


ngx_acs_hub_t *
ngx_acs_hub_find(ngx_array_t *hubs, ngx_str_t *name)
{
    ngx_uint_t      i;
    ngx_acs_hub_t  *hub;

    hub = hubs->elts;

    for (i = 0; i < hubs->nelts; i++) {
        if (hub[i].name.len == name->len
            && ngx_strncmp(hub[i].name.data, name->data, name->len) == 0)
        {
            return &hub[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_acs_hub_init_process(ngx_acs_hub_t *hub, ngx_log_t *log)
{
    if (hub->connect_to.len == 0) {
        return NGX_OK;
    }

    hub->connect_to_list = curl_slist_append(NULL,
                                             (char *) hub->connect_to.data);
    if (hub->connect_to_list == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "acs_notify: curl_slist_append() failed");
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_acs_hub_exit_process(ngx_acs_hub_t *hub)
{
    curl_slist_free_all(hub->connect_to_list);
    hub->connect_to_list = NULL;
}
