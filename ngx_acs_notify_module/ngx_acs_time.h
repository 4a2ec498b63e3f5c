
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The time of an event, as Event Grid and CloudEvents write it.  No HTTP,
 * no libc time zone.
 */


#ifndef _NGX_ACS_TIME_H_INCLUDED_
#define _NGX_ACS_TIME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/*
 * An RFC 3339 date-time, as eventTime and CloudEvents time are written
 * ("2025-06-12T10:02:24.2415391Z", "2025-06-12T12:02:24+02:00"): the
 * milliseconds since the epoch it names (fractions of a millisecond cut),
 * or NGX_ERROR when it is not one, or before 1970 or after 9999.
 */
ngx_int_t ngx_acs_event_time(ngx_str_t *s, int64_t *ms);


#endif /* _NGX_ACS_TIME_H_INCLUDED_ */
