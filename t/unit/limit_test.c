
/*
 * The concurrency limit of a lane (ngx_acs_limit.c) against a model of a
 * hub and of the worker, in 1 ms steps: the hub answers after its round
 * trip (plus jitter); the worker handles at most "cpu" answers a
 * millisecond, so that beyond what the distance needs pushes queue in
 * the worker and the round trip grows; a throttling hub answers 429 at
 * once to a push started with "throttle" or more in flight.  The lane
 * always has pushes waiting.  Prints TAP.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_limit.h"


#define MAX_FLIGHT  65536


typedef struct {
    ngx_msec_t          start;
    ngx_msec_t          ready;
    int                 throttled;
} xfer_t;


typedef struct {
    /* the model */
    ngx_msec_t          rtt;           /* ms */
    ngx_msec_t          jitter;        /* ms, 0..jitter added */
    ngx_uint_t          cpu;           /* answers a ms; 0: no bound */
    ngx_uint_t          throttle;      /* 0: never */
    ngx_uint_t          hang;          /* answers never come */
    ngx_msec_t          timeout;       /* ms, with hang */

    /* the run */
    ngx_acs_limit_t     l;
    xfer_t              q[MAX_FLIGHT];     /* a ring, by start */
    ngx_uint_t          head, n;
    ngx_msec_t          now;
    uint32_t            seed;

    /* measured over [from, now) */
    ngx_msec_t          from;
    ngx_uint_t          sent, refused;
    ngx_uint_t          lo, hi;        /* of the limit */
    ngx_uint_t          over;          /* the limit was over the ceiling */
} sim_t;


static int  tests, failed;


static void
ok(int cond, const char *name)
{
    printf("%sok %d - %s\n", cond ? "" : "not ", ++tests, name);
    failed += !cond;
}


static uint32_t
rnd(sim_t *s)
{
    s->seed = s->seed * 1103515245 + 12345;
    return (s->seed >> 8) & 0xffffff;
}


static void
sim_init(sim_t *s, ngx_msec_t rtt, ngx_uint_t cpu, ngx_uint_t ceiling)
{
    ngx_memzero(s, sizeof(sim_t));

    s->rtt = rtt;
    s->cpu = cpu;
    s->now = 1000;
    s->seed = 42;

    ngx_acs_limit_init(&s->l, 1, ceiling, s->now);
}


static void
sim_measure(sim_t *s)
{
    s->from = s->now;
    s->sent = 0;
    s->refused = 0;
    s->lo = (ngx_uint_t) -1;
    s->hi = 0;
}


/* runs for ms milliseconds */

static void
sim_run(sim_t *s, ngx_msec_t ms)
{
    xfer_t      *x;
    ngx_uint_t   done, i;
    ngx_msec_t   end;

    for (end = s->now + ms; s->now < end; s->now++) {

        /* answers due, oldest first, as many as the worker handles */

        done = 0;

        for (i = 0; i < s->n; i++) {
            x = &s->q[(s->head + i) % MAX_FLIGHT];

            if (x->start == 0 || x->ready > s->now) {
                continue;
            }

            if (s->cpu && done == s->cpu) {
                break;
            }

            done++;

            if (x->throttled || s->hang) {
                ngx_acs_limit_backoff(&s->l, s->n - done + 1, s->now);
                s->refused += (s->now >= s->from);

            } else {
                ngx_acs_limit_sample(&s->l, (s->now - x->start) * 1000,
                                     s->n - done + 1, x->start, s->now);
                s->sent += (s->now >= s->from);
            }

            x->start = 0;
        }

        while (s->n && s->q[s->head].start == 0) {
            s->head = (s->head + 1) % MAX_FLIGHT;
            s->n--;
        }

        /* the lane starts what its limit allows */

        while (s->n < s->l.limit && s->n < MAX_FLIGHT) {
            x = &s->q[(s->head + s->n) % MAX_FLIGHT];

            x->start = s->now;
            x->throttled = (s->throttle && s->n >= s->throttle);

            if (s->hang) {
                x->ready = s->now + s->timeout;

            } else if (x->throttled) {
                x->ready = s->now + 1;

            } else {
                x->ready = s->now + s->rtt
                           + (s->jitter ? rnd(s) % s->jitter : 0);
            }

            s->n++;
        }

        if (s->now >= s->from) {
            s->lo = ngx_min(s->lo, s->l.limit);
            s->hi = ngx_max(s->hi, s->l.limit);
        }

        s->over |= (s->l.limit > s->l.ceiling);
    }
}


static double
sim_rate(sim_t *s)
{
    return s->sent * 1000.0 / (s->now - s->from);
}


int
main(void)
{
    static sim_t  s;
    char          name[256];
    double        rate;

    /* 1: a steady hub 150 ms away, no bound in the worker */

    sim_init(&s, 150, 0, 4096);
    sim_run(&s, 3000);
    ok(s.l.limit == 4096, "150 ms, no other bound: the limit reaches the "
       "ceiling within 3 s");
    sim_measure(&s);
    sim_run(&s, 10000);
    ok(s.lo == 4096 && s.hi == 4096, "... and stays there: no oscillation");

    /* 2: 150 ms, a worker that handles 8 answers a ms (8,000/s) */

    sim_init(&s, 150, 8, 51200);
    sim_run(&s, 20000);
    sim_measure(&s);
    sim_run(&s, 10000);
    rate = sim_rate(&s);
    snprintf(name, sizeof(name), "150 ms, 8,000/s worker: %.0f pushes/s "
             "(>= 90%%), limit %lu..%lu", rate, (unsigned long) s.lo,
             (unsigned long) s.hi);
    ok(rate >= 7200, name);
    ok(s.hi <= 3 * 1200, "... the limit stays within 3 times the distance's "
       "need (1,200 in flight)");
    ok(s.hi * 2 <= s.lo * 3, "... and steady (highest <= 1.5 x lowest)");

    /* 3: the same at 40 ms, with jitter */

    sim_init(&s, 30, 8, 51200);
    s.jitter = 20;
    sim_run(&s, 20000);
    sim_measure(&s);
    sim_run(&s, 10000);
    rate = sim_rate(&s);
    snprintf(name, sizeof(name), "30-50 ms, 8,000/s worker: %.0f pushes/s, "
             "limit %lu..%lu", rate, (unsigned long) s.lo,
             (unsigned long) s.hi);
    ok(rate >= 7200, name);

    /* 4: a hub at hand: few in flight are enough */

    sim_init(&s, 1, 8, 51200);
    sim_run(&s, 10000);
    sim_measure(&s);
    sim_run(&s, 10000);
    rate = sim_rate(&s);
    snprintf(name, sizeof(name), "1 ms, 8,000/s worker: %.0f pushes/s, "
             "limit %lu..%lu (<= 64)", rate, (unsigned long) s.lo,
             (unsigned long) s.hi);
    ok(rate >= 7200 && s.hi <= 64, name);

    /* 5: a hub 40 ms away that throttles past 300 in flight */

    sim_init(&s, 40, 0, 51200);
    s.throttle = 300;
    sim_run(&s, 10000);
    sim_measure(&s);
    sim_run(&s, 20000);
    rate = sim_rate(&s);
    snprintf(name, sizeof(name), "throttled past 300 at 40 ms: %.0f "
             "pushes/s (>= 0.5 x 7,500), %lu refused of %lu (<= 10%%), "
             "limit %lu..%lu", rate, (unsigned long) s.refused,
             (unsigned long) (s.sent + s.refused), (unsigned long) s.lo,
             (unsigned long) s.hi);
    ok(rate >= 3750 && s.refused * 10 <= s.sent + s.refused, name);

    /* 6: a hub that moves from 40 ms to 150 ms away is not starved */

    sim_init(&s, 40, 8, 51200);
    sim_run(&s, 10000);
    s.rtt = 150;
    sim_run(&s, 10000);
    sim_measure(&s);
    sim_run(&s, 10000);
    rate = sim_rate(&s);
    snprintf(name, sizeof(name), "the hub moves from 40 to 150 ms: %.0f "
             "pushes/s (>= 80%% of 8,000), limit %lu..%lu", rate,
             (unsigned long) s.lo, (unsigned long) s.hi);
    ok(rate >= 6400, name);

    /* 7: timeouts halve the limit down to its floor, no further */

    sim_init(&s, 40, 0, 51200);
    sim_run(&s, 2000);
    ok(s.l.limit > 64, "a hub that answers: the limit grew");
    s.hang = 1;
    s.timeout = 1000;
    sim_run(&s, 15000);
    ok(s.l.limit == 1, "a hub that times out: the limit falls to its floor");

    /* 8: the ceiling pins it */

    sim_init(&s, 150, 0, 16);
    sim_measure(&s);
    sim_run(&s, 5000);
    ok(s.hi == 16, "a ceiling of 16 is reached");
    ok(!s.over, "... and never passed");

    /* 9: one backoff a round */

    sim_init(&s, 40, 0, 51200);
    sim_run(&s, 2000);
    {
        ngx_uint_t  before = s.l.limit;

        ngx_acs_limit_backoff(&s.l, s.n, s.now);
        ngx_acs_limit_backoff(&s.l, s.n, s.now);
        ngx_acs_limit_backoff(&s.l, s.n, s.now);
        ok(s.l.limit == before / 2, "three refusals in a round halve the "
           "limit once");
    }

    printf("1..%d\n", tests);

    return failed ? 1 : 0;
}
