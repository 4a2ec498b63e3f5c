
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Event Grid and CloudEvents 1.0 deliveries, parsed with yajl's streaming
 * parser into compact event records.  Works on plain buffers and a pool, so
 * that it can be unit-tested and fuzzed outside nginx.
 */


#ifndef _NGX_ACS_EVENT_H_INCLUDED_
#define _NGX_ACS_EVENT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_ACS_EVENT_MAX_SIZE     (1024 * 1024)
#define NGX_ACS_EVENT_MAX_EVENTS   5000
#define NGX_ACS_EVENT_MAX_DEPTH    64
#define NGX_ACS_EVENT_PATH_MAX     256


typedef enum {
    NGX_ACS_JSON_STRING = 0,
    NGX_ACS_JSON_NUMBER,
    NGX_ACS_JSON_BOOL,
    NGX_ACS_JSON_NULL
} ngx_acs_json_type_e;


typedef enum {
    NGX_ACS_SCHEMA_UNKNOWN = 0,
    NGX_ACS_SCHEMA_EVENTGRID,
    NGX_ACS_SCHEMA_CLOUDEVENTS
} ngx_acs_schema_e;


/* a scalar found under "data": its lower-cased dotted path and its value */

typedef struct {
    ngx_str_t                   path;
    ngx_str_t                   value;
    ngx_acs_json_type_e         type;
} ngx_acs_field_t;


typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   type;          /* eventType / type */
    ngx_str_t                   topic;         /* topic / source */
    ngx_str_t                   subject;
    ngx_str_t                   time;          /* eventTime / time */
    ngx_str_t                   data_version;
    ngx_str_t                   spec_version;
    ngx_str_t                   data_string;   /* "data" given as a string */
    ngx_array_t                 fields;        /* of ngx_acs_field_t */

    off_t                       start;
    size_t                      size;

    ngx_uint_t                  seen;          /* envelope fields present */
    ngx_acs_schema_e            schema;
} ngx_acs_event_t;


typedef struct ngx_acs_event_parser_s  ngx_acs_event_parser_t;


ngx_acs_event_parser_t *ngx_acs_event_parser_create(ngx_pool_t *pool,
    size_t max_event_size, ngx_uint_t max_events);
ngx_int_t ngx_acs_event_parse(ngx_acs_event_parser_t *p, u_char *data,
    size_t len);
ngx_int_t ngx_acs_event_parse_done(ngx_acs_event_parser_t *p);

/*
 * After NGX_ERROR from the functions above: the HTTP status the input earns
 * (400 or 413), and a message that says why, safe to log.
 */
ngx_uint_t ngx_acs_event_parser_status(ngx_acs_event_parser_t *p);
ngx_str_t *ngx_acs_event_parser_error(ngx_acs_event_parser_t *p);
ngx_array_t *ngx_acs_event_parser_events(ngx_acs_event_parser_t *p);

/* parse a "data" JSON string (seen for validation events) into fields */
ngx_int_t ngx_acs_event_parse_data_string(ngx_pool_t *pool,
    ngx_acs_event_t *ev);

/* look a field up by its lower-cased dotted path, e.g. "to.rawid" */
ngx_acs_field_t *ngx_acs_event_field(ngx_acs_event_t *ev, ngx_str_t *path);
ngx_str_t *ngx_acs_event_string(ngx_acs_event_t *ev, char *path);

/* a scalar of data as text (string, number or boolean), else "" */
void ngx_acs_event_text(ngx_acs_event_t *ev, ngx_str_t *path,
    ngx_str_t *value);

/* s copied into pool, in place (an empty one becomes ""): NGX_OK, NGX_ERROR */
ngx_int_t ngx_acs_event_dup(ngx_pool_t *pool, ngx_str_t *s);

/* a copy of the event in pool, NULL when out of memory */
ngx_acs_event_t *ngx_acs_event_copy(ngx_pool_t *pool, ngx_acs_event_t *ev);

#endif /* _NGX_ACS_EVENT_H_INCLUDED_ */
