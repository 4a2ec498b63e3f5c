
/*
 * The event parser (ngx_acs_event.c) on arbitrary bytes, for fuzz_main.c:
 * the body cut in two where its first byte says, or, replaying a file, at
 * every 1/16th, as nginx may hand the body over in several buffers; each
 * event's time is read too.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_event.h"
#include "ngx_acs_time.h"


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);


static void
ngx_acs_fuzz_one(const u_char *data, size_t size, size_t cut)
{
    int64_t                  ms;
    ngx_str_t                path = ngx_string("recipientcommunicationidentifier.rawid");
    ngx_uint_t               i;
    ngx_pool_t              *pool;
    ngx_array_t             *events;
    ngx_acs_event_t         *ev;
    ngx_acs_event_parser_t  *p;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return;
    }

    p = ngx_acs_event_parser_create(pool, NGX_ACS_EVENT_MAX_SIZE,
                                    NGX_ACS_EVENT_MAX_EVENTS);

    if (p
        && ngx_acs_event_parse(p, (u_char *) data, cut) == NGX_OK
        && ngx_acs_event_parse(p, (u_char *) data + cut, size - cut) == NGX_OK
        && ngx_acs_event_parse_done(p) == NGX_OK)
    {
        events = ngx_acs_event_parser_events(p);
        ev = events->elts;

        for (i = 0; i < events->nelts; i++) {
            (void) ngx_acs_event_field(&ev[i], &path);
            (void) ngx_acs_event_time(&ev[i].time, &ms);

            if (ev[i].data_string.len) {
                (void) ngx_acs_event_parse_data_string(pool, &ev[i]);
            }
        }

    } else if (p) {
        /* a refusal always says why, with a status */
        if (ngx_acs_event_parser_status(p) == 0
            || ngx_acs_event_parser_error(p)->len == 0)
        {
            abort();
        }
    }

    ngx_destroy_pool(pool);
}


void
ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay)
{
    size_t  k;

    if (!replay) {
        ngx_acs_fuzz_one(data, size, size ? data[0] % (size + 1) : 0);
        return;
    }

    for (k = 0; k <= 16; k++) {
        ngx_acs_fuzz_one(data, size, size * k / 16);
    }
}
