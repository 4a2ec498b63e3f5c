
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_time.h"


static ngx_int_t ngx_acs_time_field(u_char **pos, u_char *last, ngx_uint_t n,
    ngx_uint_t min, ngx_uint_t max, ngx_uint_t *value);


/*
 * RFC 3339, section 5.6: YYYY-MM-DD, "T" (any case, or a space, which the
 * RFC allows), hh:mm:ss, an optional fraction of any length, then "Z" or
 * an offset +hh:mm / -hh:mm.  A leap second (:60) counts as :59.  Days
 * from the civil date as in "chrono-Compatible Low-Level Date Algorithms"
 * (H. Hinnant): no libc time zone, no table.
 */

ngx_int_t
ngx_acs_event_time(ngx_str_t *s, int64_t *ms)
{
    u_char      *p, *last;
    int64_t      days, y, era, yoe, doy, doe, frac;
    ngx_int_t    sign;
    ngx_uint_t   year, month, day, hour, min, sec, oh, om, mdays, digits;

    static ngx_uint_t  mdays_of[] = {
        31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
    };

    p = s->data;
    last = p + s->len;

    if (ngx_acs_time_field(&p, last, 4, 1970, 9999, &year) != NGX_OK
        || p == last || *p++ != '-'
        || ngx_acs_time_field(&p, last, 2, 1, 12, &month) != NGX_OK
        || p == last || *p++ != '-'
        || ngx_acs_time_field(&p, last, 2, 1, 31, &day) != NGX_OK
        || p == last || (*p != 'T' && *p != 't' && *p != ' '))
    {
        return NGX_ERROR;
    }

    p++;

    if (ngx_acs_time_field(&p, last, 2, 0, 23, &hour) != NGX_OK
        || p == last || *p++ != ':'
        || ngx_acs_time_field(&p, last, 2, 0, 59, &min) != NGX_OK
        || p == last || *p++ != ':'
        || ngx_acs_time_field(&p, last, 2, 0, 60, &sec) != NGX_OK)
    {
        return NGX_ERROR;
    }

    mdays = mdays_of[month - 1];

    if (month == 2 && year % 4 == 0 && (year % 100 != 0 || year % 400 == 0))
    {
        mdays = 29;
    }

    if (day > mdays) {
        return NGX_ERROR;
    }

    if (sec == 60) {
        sec = 59;
    }

    /* the fraction: its first three digits are the milliseconds */

    frac = 0;

    if (p < last && *p == '.') {
        p++;

        for (digits = 0; p < last && *p >= '0' && *p <= '9'; p++, digits++) {
            if (digits < 3) {
                frac = frac * 10 + (*p - '0');
            }
        }

        if (digits == 0) {
            return NGX_ERROR;
        }

        for ( /* void */ ; digits < 3; digits++) {
            frac *= 10;
        }
    }

    if (p == last) {
        return NGX_ERROR;
    }

    if (*p == 'Z' || *p == 'z') {
        p++;
        sign = 0;
        oh = 0;
        om = 0;

    } else if (*p == '+' || *p == '-') {
        sign = (*p++ == '+') ? 1 : -1;

        if (ngx_acs_time_field(&p, last, 2, 0, 23, &oh) != NGX_OK
            || p == last || *p++ != ':'
            || ngx_acs_time_field(&p, last, 2, 0, 59, &om) != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else {
        return NGX_ERROR;
    }

    if (p != last) {
        return NGX_ERROR;
    }

    y = (int64_t) year - (month <= 2);
    era = y / 400;
    yoe = y - era * 400;
    doy = (153 * ((int64_t) month + (month > 2 ? -3 : 9)) + 2) / 5
          + (int64_t) day - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    days = era * 146097 + doe - 719468;

    *ms = ((days * 86400 + (int64_t) hour * 3600 + (int64_t) min * 60
            + (int64_t) sec
            - sign * ((int64_t) oh * 3600 + (int64_t) om * 60))
           * 1000)
          + frac;

    return (*ms < 0) ? NGX_ERROR : NGX_OK;
}


/* exactly n digits, a number from min to max */

static ngx_int_t
ngx_acs_time_field(u_char **pos, u_char *last, ngx_uint_t n, ngx_uint_t min,
    ngx_uint_t max, ngx_uint_t *value)
{
    u_char      *p;
    ngx_uint_t   v, i;

    p = *pos;

    if ((size_t) (last - p) < n) {
        return NGX_ERROR;
    }

    for (v = 0, i = 0; i < n; i++, p++) {
        if (*p < '0' || *p > '9') {
            return NGX_ERROR;
        }

        v = v * 10 + (*p - '0');
    }

    if (v < min || v > max) {
        return NGX_ERROR;
    }

    *pos = p;
    *value = v;

    return NGX_OK;
}
