
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Helpers of the directives: "name=value" parameters, secret values
 * (literal, file: or env:), times that may be "off", and the
 * case-insensitive lists of acs_notify_topics and acs_notify_subscriptions.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_conf.h"


#define NGX_ACS_CONF_FILE_MAX   65536


static ngx_int_t ngx_acs_conf_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *out);


/* "name=value" parameters: 1 and the value when arg is one of name */

ngx_uint_t
ngx_acs_conf_param(ngx_str_t *arg, const char *name, ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len < len || ngx_strncmp(arg->data, name, len) != 0) {
        return 0;
    }

    value->data = arg->data + len;
    value->len = arg->len - len;

    return 1;
}


/*
 * A secret parameter: a literal, "file:/path" (contents, trailing newline
 * stripped) or "env:NAME" (read at configuration time, in the master).
 */

ngx_int_t
ngx_acs_conf_value(ngx_conf_t *cf, ngx_str_t *value, ngx_str_t *out)
{
    char       *env;
    ngx_str_t   name;

    if (value->len > 5 && ngx_strncmp(value->data, "file:", 5) == 0) {
        name.data = value->data + 5;
        name.len = value->len - 5;

        return ngx_acs_conf_file(cf, &name, out);
    }

    if (value->len > 4 && ngx_strncmp(value->data, "env:", 4) == 0) {
        name.len = value->len - 4;
        name.data = ngx_pnalloc(cf->pool, name.len + 1);
        if (name.data == NULL) {
            return NGX_ERROR;
        }

        ngx_cpystrn(name.data, value->data + 4, name.len + 1);

        env = getenv((char *) name.data);
        if (env == NULL || *env == '\0') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "environment variable \"%V\" is not set",
                               &name);
            return NGX_ERROR;
        }

        out->len = ngx_strlen(env);
        out->data = ngx_pnalloc(cf->pool, out->len);
        if (out->data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(out->data, env, out->len);
        return NGX_OK;
    }

    *out = *value;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_conf_file(ngx_conf_t *cf, ngx_str_t *name, ngx_str_t *out)
{
    ssize_t           n;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_fd_info_n " \"%V\" failed", name);
        goto failed;
    }

    if (ngx_file_size(&fi) > NGX_ACS_CONF_FILE_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" is larger than 64k", name);
        goto failed;
    }

    out->len = ngx_file_size(&fi);
    out->data = ngx_pnalloc(cf->pool, out->len + 1);
    if (out->data == NULL) {
        goto failed;
    }

    n = ngx_read_file(&file, out->data, out->len, 0);
    if (n != (ssize_t) out->len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "cannot read \"%V\"", name);
        goto failed;
    }

    ngx_close_file(file.fd);

    while (out->len && (out->data[out->len - 1] == '\n'
                        || out->data[out->len - 1] == '\r'))
    {
        out->len--;
    }

    if (out->len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" is empty", name);
        return NGX_ERROR;
    }

    return NGX_OK;

failed:

    ngx_close_file(file.fd);
    return NGX_ERROR;
}


/* "TIME | off": ngx_conf_set_msec_slot that takes "off" for 0 */

char *
ngx_acs_conf_set_msec_off_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    ngx_msec_t       *msp;
    ngx_str_t        *value;
    ngx_conf_post_t  *post;

    msp = (ngx_msec_t *) (p + cmd->offset);

    if (*msp != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *msp = 0;

    } else {
        *msp = ngx_parse_time(&value[1], 0);
        if (*msp == (ngx_msec_t) NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: \"%V\" is not a time (TIME or off)",
                               &cmd->name, &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (cmd->post) {
        post = cmd->post;
        return post->post_handler(cf, post, msp);
    }

    return NGX_CONF_OK;
}


/* acs_notify_topics and acs_notify_subscriptions: case-insensitive lists */

char *
ngx_acs_conf_set_patterns(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t           *value;
    ngx_uint_t           i;
    ngx_array_t        **a;
    ngx_acs_pattern_t   *pat;

    a = (ngx_array_t **) (p + cmd->offset);

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    *a = ngx_array_create(cf->pool, cf->args->nelts - 1,
                          sizeof(ngx_acs_pattern_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        pat = ngx_array_push(*a);
        if (pat == NULL) {
            return NGX_CONF_ERROR;
        }

        pat->value = value[i];
        pat->prefix = 0;

        if (pat->value.len && pat->value.data[pat->value.len - 1] == '*') {
            pat->value.len--;
            pat->prefix = 1;
        }

        if (pat->value.len == 0 && !pat->prefix) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%V: empty value", &cmd->name);
            return NGX_CONF_ERROR;
        }

        ngx_strlow(pat->value.data, pat->value.data, pat->value.len);
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_acs_pattern_match(ngx_array_t *patterns, ngx_str_t *value)
{
    ngx_uint_t          i;
    ngx_acs_pattern_t  *pat;

    pat = patterns->elts;

    for (i = 0; i < patterns->nelts; i++) {

        if (value->len < pat[i].value.len
            || (!pat[i].prefix && value->len != pat[i].value.len))
        {
            continue;
        }

        if (ngx_strncasecmp(value->data, pat[i].value.data, pat[i].value.len)
            == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


void
ngx_acs_worker_event(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_connection_t *dummy, ngx_log_t *log)
{
    dummy->fd = (ngx_socket_t) -1;
    ev->data = dummy;
    ev->handler = handler;
    ev->log = log;
}
