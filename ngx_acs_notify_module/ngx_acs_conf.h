
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Helpers of the directives, for every file that has some, and of the
 * events a worker keeps for itself.
 */


#ifndef _NGX_ACS_CONF_H_INCLUDED_
#define _NGX_ACS_CONF_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


typedef struct {
    ngx_str_t                   value;      /* lower case */
    ngx_uint_t                  prefix;     /* unsigned:1, ended with "*" */
} ngx_acs_pattern_t;


/* "name=value" parameters: 1 and the value when arg is one of name */
ngx_uint_t ngx_acs_conf_param(ngx_str_t *arg, const char *name,
    ngx_str_t *value);

/*
 * A secret parameter: a literal, "file:/path" (contents, trailing newline
 * stripped) or "env:NAME" (read at configuration time, in the master).
 */
ngx_int_t ngx_acs_conf_value(ngx_conf_t *cf, ngx_str_t *value,
    ngx_str_t *out);

/* a directive of case-insensitive values, "*" at the end for a prefix */
char *ngx_acs_conf_set_patterns(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* "TIME | off" into an ngx_msec_t (off: 0), as ngx_conf_set_msec_slot */
char *ngx_acs_conf_set_msec_off_slot(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* NGX_OK when value matches one of the patterns */
ngx_int_t ngx_acs_pattern_match(ngx_array_t *patterns, ngx_str_t *value);

/*
 * An event of the worker's own (a timer, a posted pass): its data is a
 * dummy connection with no socket, as nginx's debug logging of timers reads
 * the fd of ev->data.  Not cancelable unless the caller says so.
 */
void ngx_acs_worker_event(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_connection_t *dummy, ngx_log_t *log);


#endif /* _NGX_ACS_CONF_H_INCLUDED_ */
