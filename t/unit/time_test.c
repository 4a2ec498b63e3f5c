
/*
 * Event times (ngx_acs_event_time() in ngx_acs_time.c): RFC 3339 texts
 * as Event Grid and CloudEvents write them, against the milliseconds since
 * the epoch they name, and texts that are not times.  Prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_time.h"


static int  tests, failed;


static void
is_time(const char *text, int64_t want, const char *name)
{
    int64_t    ms;
    ngx_int_t  rc;
    ngx_str_t  s;

    s.data = (u_char *) text;
    s.len = strlen(text);

    ms = -1;
    rc = ngx_acs_event_time(&s, &ms);

    tests++;

    if (rc == NGX_OK && ms == want) {
        printf("ok %d - %s\n", tests, name);
        return;
    }

    printf("not ok %d - %s\n#   \"%s\": rc %d, %lld ms, expected %lld\n",
           tests, name, text, (int) rc, (long long) ms, (long long) want);
    failed++;
}


static void
refused(const char *text, const char *name)
{
    int64_t    ms;
    ngx_int_t  rc;
    ngx_str_t  s;

    s.data = (u_char *) text;
    s.len = strlen(text);

    rc = ngx_acs_event_time(&s, &ms);

    tests++;

    if (rc == NGX_ERROR) {
        printf("ok %d - %s\n", tests, name);
        return;
    }

    printf("not ok %d - %s\n#   \"%s\" was taken: %lld ms\n", tests, name,
           text, (long long) ms);
    failed++;
}


int
main(void)
{
    /* date -u -d 2025-06-12T10:02:24Z +%s: 1749722544 */

    is_time("2025-06-12T10:02:24.2415391Z", 1749722544241LL,
            "Event Grid's eventTime, 7 digits of fraction");
    is_time("2025-06-12T10:02:24Z", 1749722544000LL, "no fraction");
    is_time("2025-06-12T10:02:24.5Z", 1749722544500LL, "one digit");
    is_time("2025-06-12T10:02:24.05Z", 1749722544050LL, "two digits");
    is_time("2025-06-12T12:02:24.241+02:00", 1749722544241LL,
            "an offset east");
    is_time("2025-06-12T05:32:24.241-04:30", 1749722544241LL,
            "an offset west with minutes");
    is_time("2025-06-12t10:02:24z", 1749722544000LL, "lower-case t and z");
    is_time("2025-06-12 10:02:24Z", 1749722544000LL,
            "a space for T (RFC 3339, 5.6 note)");
    is_time("1970-01-01T00:00:00Z", 0, "the epoch");
    is_time("2000-02-29T23:59:59.999Z", 951868799999LL,
            "29 February of a leap year divisible by 400");
    is_time("2024-02-29T00:00:00Z", 1709164800000LL,
            "29 February 2024");
    is_time("2016-12-31T23:59:60Z", 1483228799000LL,
            "a leap second counts as :59");
    is_time("2025-01-01T00:30:00+01:00", 1735687800000LL,
            "an offset that crosses the year");
    is_time("9999-12-31T23:59:59Z", 253402300799000LL, "the last year");

    refused("", "empty");
    refused("2025-06-12", "a date alone");
    refused("2025-06-12T10:02:24", "no zone");
    refused("2025-06-12T10:02:24.Z", "a dot without digits");
    refused("2025-06-12T10:02:24.123Zx", "trailing bytes");
    refused("2025-06-12T10:02:24+0200", "an offset without colon");
    refused("2025-06-12T10:02:24+24:00", "an offset of 24 hours");
    refused("2025-13-12T10:02:24Z", "month 13");
    refused("2025-00-12T10:02:24Z", "month 0");
    refused("2025-02-29T10:02:24Z", "29 February of a common year");
    refused("1900-02-29T10:02:24Z", "a year before the epoch");
    refused("2025-04-31T10:02:24Z", "31 April");
    refused("2025-06-12T24:00:00Z", "hour 24");
    refused("2025-06-12T10:60:00Z", "minute 60");
    refused("2025-06-12T10:02:61Z", "second 61");
    refused("2025-6-12T10:02:24Z", "a month of one digit");
    refused("+2025-06-12T10:02:24Z", "a sign before the year");
    refused("2025-06-12T10:02:24.12a4Z", "a letter in the fraction");
    refused("1970-01-01T00:00:00+01:00", "an instant before the epoch");
    refused("Thu, 12 Jun 2025 10:02:24 GMT", "an HTTP date");

    printf("1..%d\n", tests);

    return failed ? 1 : 0;
}
