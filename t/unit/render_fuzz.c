
/*
 * Routing, messages and payloads (ngx_acs_route.c, ngx_acs_render.c,
 * ngx_acs_template.c, ngx_acs_platform.c) on arbitrary events, for
 * fuzz_main.c.  The input is an Event Grid or CloudEvents body, and
 * optionally, after a NUL byte, a template: its first byte picks the event
 * type, the second the platform, the rest is the payload.  Each event is
 * routed, its message made with and without preview, and its payload and
 * headers rendered for a device of every platform.  Beyond not crashing: a
 * rendered JSON payload is valid JSON within its platform's limit, and no
 * push has more headers than NGX_ACS_PUSH_HEADERS.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <yajl/yajl_tree.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_event.h"
#include "ngx_acs_device.h"
#include "ngx_acs_platform.h"
#include "ngx_acs_route.h"
#include "ngx_acs_render.h"
#include "ngx_acs_template.h"


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);
static void ngx_acs_fuzz_body(ngx_acs_platform_t *p, ngx_str_t *body);


static ngx_str_t  ngx_acs_fuzz_types[] = {
    ngx_string("ChatMessageReceived"),
    ngx_string("ChatThreadCreatedWithUser"),
    ngx_string("ChatParticipantAddedToThreadWithUser"),
    ngx_string("ChatThreadParticipantAdded"),
    ngx_string("IncomingCall")
};

/* a handle for each platform: the first its check takes */

static ngx_str_t  ngx_acs_fuzz_handles[] = {
    ngx_string("fcm-token_1:APA91bHPRgkF3JUikC4ENAHEeMrd41Zxv3hVZjC9KtT8"),
    ngx_string("a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4"
               "a1b2c3d4a1b2c3d4a1b2c3d4a1b2c3d4"),
    ngx_string("https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBub3Q")
};


/* nginx's, which the unit tests' shim does not have */

void ngx_cdecl
ngx_conf_log_error(ngx_uint_t level, ngx_conf_t *cf, ngx_err_t err,
    const char *fmt, ...)
{
    (void) level;
    (void) cf;
    (void) err;
    (void) fmt;
}


void
ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay)
{
    u_char                  *nul;
    size_t                   len;
    ngx_str_t                type, payload, body;
    ngx_int_t                rc;
    ngx_uint_t               i, k, p, n, preview;
    ngx_conf_t               cf;
    ngx_pool_t              *pool;
    ngx_array_t             *events, *templates;
    ngx_acs_msg_t            msg;
    ngx_acs_route_t          route;
    ngx_acs_event_t         *ev;
    ngx_acs_device_t         dev;
    ngx_acs_header_t         h[NGX_ACS_PUSH_HEADERS];
    ngx_acs_expiry_t         exp;
    ngx_acs_template_t      *tpl;
    ngx_acs_platform_t      *pf;
    ngx_acs_event_parser_t  *parser;

    (void) replay;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return;
    }

    nul = (u_char *) memchr(data, '\0', size);    /* const in C23 glibc */
    len = nul ? (size_t) (nul - data) : size;
    templates = NULL;

    if (nul && size - len >= 3) {
        ngx_memzero(&cf, sizeof(ngx_conf_t));
        cf.pool = pool;
        cf.temp_pool = pool;

        type = ngx_acs_fuzz_types[nul[1] % 5];
        payload.data = nul + 3;
        payload.len = size - len - 3;

        pf = ngx_acs_platform(NGX_ACS_PLATFORM_APNS
                              + nul[2] % (NGX_ACS_PLATFORMS
                                          - NGX_ACS_PLATFORM_APNS));

        (void) ngx_acs_template_add(&cf, &templates, &type, &pf->name,
                                    &payload);
    }

    parser = ngx_acs_event_parser_create(pool, NGX_ACS_EVENT_MAX_SIZE,
                                         NGX_ACS_EVENT_MAX_EVENTS);

    if (parser == NULL
        || ngx_acs_event_parse(parser, (u_char *) data, len) != NGX_OK
        || ngx_acs_event_parse_done(parser) != NGX_OK)
    {
        goto done;
    }

    events = ngx_acs_event_parser_events(parser);
    ev = events->elts;

    for (i = 0; i < events->nelts; i++) {

        if (ev[i].data_string.len
            && ngx_acs_event_parse_data_string(pool, &ev[i]) == NGX_ERROR)
        {
            goto done;
        }

        rc = ngx_acs_route(pool, &ev[i], &route);

        if (rc != NGX_OK) {
            continue;
        }

        if (route.recipient.len == 0
            || route.recipient.len > NGX_ACS_RAW_ID_MAX)
        {
            abort();
        }

        for (preview = 0; preview < 2; preview++) {

            if (ngx_acs_message(pool, &ev[i], &route, preview,
                                ngx_acs_template_find(templates, route.rule,
                                                      NULL)
                                != NULL,
                                &msg)
                != NGX_OK)
            {
                goto done;
            }

            for (p = NGX_ACS_PLATFORM_APNS; p < NGX_ACS_PLATFORMS; p++) {
                pf = ngx_acs_platform(p);

                ngx_memzero(&dev, sizeof(ngx_acs_device_t));
                ngx_str_set(&dev.device_id, "device-1");
                dev.platform = pf->id;

                for (k = 0; k < sizeof(ngx_acs_fuzz_handles)
                                / sizeof(ngx_str_t) - 1; k++)
                {
                    if (pf->check(&ngx_acs_fuzz_handles[k]) == NGX_OK) {
                        break;
                    }
                }

                dev.handle = ngx_acs_fuzz_handles[k];

                if (pf->keys) {
                    ngx_str_set(&dev.p256dh, "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4"
                                "YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8"
                                "QcYP7DkM");
                    ngx_str_set(&dev.auth, "tBHItJI5svbpez7KI4CCXg");
                }

                /* a call with ring time left, and without a limit */

                exp.ttl = preview ? 117 : -1;
                exp.until = 1749722661;

                tpl = ngx_acs_template_find(templates, route.rule, pf);

                rc = tpl ? ngx_acs_template_render(pool, tpl, &msg, &body)
                         : ngx_acs_render(pool, pf, &msg, exp.ttl, &body);

                if (rc == NGX_OK) {
                    ngx_acs_fuzz_body(pf, &body);
                }

                n = ngx_acs_render_headers(pf, &msg, &dev, &exp, h);

                if (n > NGX_ACS_PUSH_HEADERS) {
                    abort();
                }
            }
        }
    }

done:

    ngx_destroy_pool(pool);
}


static void
ngx_acs_fuzz_body(ngx_acs_platform_t *p, ngx_str_t *body)
{
    char      *text;
    yajl_val   tree;

    if (body->len > p->limit) {
        abort();
    }

    if (p->markup == NGX_ACS_MARKUP_XML) {
        return;
    }

    text = malloc(body->len + 1);
    if (text == NULL) {
        return;
    }

    ngx_memcpy(text, body->data, body->len);
    text[body->len] = '\0';

    tree = yajl_tree_parse(text, NULL, 0);

    if (tree == NULL || !YAJL_IS_OBJECT(tree) || strlen(text) != body->len) {
        abort();
    }

    yajl_tree_free(tree);
    free(text);
}
