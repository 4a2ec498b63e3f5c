
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The built-in payloads (the texts and ids are those of the event's
 * message, ngx_acs_route.c; all JSON is generated with yajl_gen):
 *
 * apns, chat (headers apns-push-type: alert, apns-priority: 10,
 * apns-collapse-id: COLLAPSE):
 *     {"aps":{"alert":{"title":TITLE,"body":BODY},"sound":"default",
 *             "thread-id":THREAD,"mutable-content":1},
 *      "acs":{"eventId":ID,"eventType":TYPE,"threadId":THREAD,
 *             "messageId":MESSAGE,"senderId":SENDER}}
 *     "thread-id" only when the thread id is known; an "added" event has no
 *     "messageId" and its "senderId" is whoever created or added.
 *
 * apns, incoming call (same headers, and apns-expiration: the epoch second
 * its ring time ends, when it has one):
 *     {"aps":{"alert":{"body":"Incoming call from Alice"},"sound":"default"},
 *      "acs":{"eventId":ID,"eventType":TYPE,"callId":CORRELATION,
 *             "callerId":FROM,"recipientId":TO}}
 *
 * apns-voip, incoming call only (apns-push-type: voip, apns-priority: 10,
 * apns-expiration: 0, apns-collapse-id: COLLAPSE):
 *     {"aps":{},"data":{"eventId":107,"cp":CP,"callId":CORRELATION,
 *      "recipientId":TO,"callerId":FROM,"displayName":NAME,
 *      "videoCall":"false"}}
 *
 * fcmv1, chat:
 *     {"message":{"notification":{"title":TITLE,"body":BODY},
 *      "data":{the "acs" object of apns},
 *      "android":{"priority":"high"}}}
 *     (no collapse_key: FCM keeps 4 per offline device, see below)
 *
 * fcmv1, incoming call (a data message; TTL the seconds of ring time left,
 * 60 when the call has no ring time, acs_notify_call_ttl off):
 *     {"message":{"data":{"eventId":"107","cp":CP,...,"videoCall":"false"},
 *      "android":{"priority":"high","ttl":"TTLs","collapse_key":COLLAPSE}}}
 *
 * wns (X-WNS-Type: wns/toast, and for a call X-WNS-TTL: its seconds of
 * ring time left, at least 1), any intent:
 *     <toast><visual><binding template="ToastGeneric"><text>TITLE</text>
 *     <text>BODY</text></binding></visual></toast>
 *
 * browser (Auth, P256DH headers): the fcmv1 "data" object of the intent
 * plus "title" and "body" (always both, "" when empty).
 *
 * A payload over the platform's limit has its BODY, then its TITLE cut on
 * a UTF-8 character boundary and ended with "..." (U+2026), and is built
 * again; a payload that cannot fit even with both emptied (voip and data
 * messages have nothing to cut) is NGX_DECLINED.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_gen.h>

#include "ngx_acs_json.h"
#include "ngx_acs_render.h"


#define NGX_ACS_CALL_PUSH_EVENT      107    /* the calling SDK's push id */
#define NGX_ACS_CALL_TTL_UNLIMITED   60     /* s, FCM's ttl of a call that
                                               has no ring time */
#define NGX_ACS_SHRINK_MAX           8
#define NGX_ACS_ELLIPSIS             "\xe2\x80\xa6"
#define NGX_ACS_ELLIPSIS_LEN         3


/* a header of the push: NAME a literal, VALUE a literal or an ngx_str_t */

#define ngx_acs_render_header(rd, name, value)                               \
    ngx_acs_render_header_str(rd, (u_char *) name, sizeof(name) - 1,         \
                              (u_char *) value, sizeof(value) - 1)

#define ngx_acs_render_header_value(rd, name, value)                         \
    ngx_acs_render_header_str(rd, (u_char *) name, sizeof(name) - 1,         \
                              (value)->data, (value)->len)

static void ngx_acs_render_header_str(ngx_acs_render_t *rd, u_char *name,
    size_t name_len, u_char *value, size_t value_len);
static void ngx_acs_render_collapse(ngx_acs_render_t *rd);
static ngx_int_t ngx_acs_render_fit(ngx_acs_render_t *rd,
    ngx_acs_build_pt build, ngx_str_t *out);
static ngx_int_t ngx_acs_render_shorten(ngx_acs_render_t *rd, ngx_str_t *s,
    size_t excess);
static size_t ngx_acs_render_cost(ngx_acs_render_t *rd, u_char c);
static ngx_int_t ngx_acs_render_open(ngx_acs_render_t *rd,
    ngx_acs_gen_t *gen);
static ngx_int_t ngx_acs_render_ids(ngx_acs_render_t *rd,
    ngx_acs_gen_t *gen);
static void ngx_acs_render_call(ngx_acs_render_t *rd, ngx_acs_gen_t *gen,
    ngx_uint_t numeric);



ngx_int_t
ngx_acs_render(ngx_pool_t *pool, ngx_acs_platform_t *p, ngx_acs_msg_t *msg,
    time_t ttl, ngx_str_t *body)
{
    ngx_acs_render_t  rd;

    /* iOS allows VoIP pushes only for calls */

    if (p->voip == NGX_ACS_VOIP_ONLY
        && msg->intent != NGX_ACS_INTENT_INCOMING_CALL)
    {
        return NGX_DECLINED;
    }

    rd.pool = pool;
    rd.platform = p;
    rd.msg = msg;
    rd.title = msg->title;
    rd.text = msg->text;
    rd.ttl = ttl;

    return ngx_acs_render_fit(&rd, p->build, body);
}


ngx_uint_t
ngx_acs_render_headers(ngx_acs_platform_t *p, ngx_acs_msg_t *msg,
    ngx_acs_device_t *dev, ngx_acs_expiry_t *exp, ngx_acs_header_t *h)
{
    ngx_acs_render_t  rd;

    if (p->headers == NULL) {
        return 0;
    }

    ngx_memzero(&rd, sizeof(ngx_acs_render_t));

    rd.platform = p;
    rd.msg = msg;
    rd.dev = dev;
    rd.exp = exp;
    rd.header = h;

    p->headers(&rd);

    return rd.header - h;
}


void
ngx_acs_headers_apns(ngx_acs_render_t *rd)
{
    ngx_str_t  until;

    ngx_acs_render_header(rd, "apns-push-type", "alert");
    ngx_acs_render_header(rd, "apns-priority", "10");

    if (rd->exp->ttl >= 0) {
        until.data = rd->exp->text;
        until.len = ngx_sprintf(rd->exp->text, "%T", rd->exp->until)
                    - rd->exp->text;
        ngx_acs_render_header_value(rd, "apns-expiration", &until);
    }

    ngx_acs_render_collapse(rd);
}


void
ngx_acs_headers_voip(ngx_acs_render_t *rd)
{
    ngx_acs_render_header(rd, "apns-push-type", "voip");
    ngx_acs_render_header(rd, "apns-priority", "10");

    /* a VoIP push rings now or never: APNs does not keep it */
    ngx_acs_render_header(rd, "apns-expiration", "0");

    ngx_acs_render_collapse(rd);
}


void
ngx_acs_headers_wns(ngx_acs_render_t *rd)
{
    ngx_str_t  left;

    ngx_acs_render_header(rd, "X-WNS-Type", "wns/toast");

    if (rd->exp->ttl >= 0) {
        left.data = rd->exp->text;
        left.len = ngx_sprintf(rd->exp->text, "%T",
                               ngx_max(rd->exp->ttl, 1))
                   - rd->exp->text;
        ngx_acs_render_header_value(rd, "X-WNS-TTL", &left);
    }
}


/*
 * The device's keys, when it carries them: a device pushed to directly;
 * a tag's installations have theirs at the hub
 */

void
ngx_acs_headers_browser(ngx_acs_render_t *rd)
{
    if (rd->dev->auth.len && rd->dev->p256dh.len) {
        ngx_acs_render_header_value(rd, "Auth", &rd->dev->auth);
        ngx_acs_render_header_value(rd, "P256DH", &rd->dev->p256dh);
    }

}


ngx_int_t
ngx_acs_build_apns(ngx_acs_render_t *rd, ngx_str_t *out)
{
    ngx_acs_gen_t  gen;

    if (ngx_acs_render_open(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "aps");
    ngx_acs_gen_map_open(&gen);

    ngx_acs_gen_key(&gen, "alert");
    ngx_acs_gen_map_open(&gen);

    if (rd->title.len) {
        ngx_acs_gen_pair(&gen, "title", &rd->title);
    }

    ngx_acs_gen_pair(&gen, "body", &rd->text);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "sound");
    ngx_acs_gen_cstr(&gen, "default");

    if (rd->msg->intent != NGX_ACS_INTENT_INCOMING_CALL) {

        if (rd->msg->thread_id.len) {
            ngx_acs_gen_pair(&gen, "thread-id", &rd->msg->thread_id);
        }

        ngx_acs_gen_key(&gen, "mutable-content");
        ngx_acs_gen_int(&gen, 1);
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "acs");
    ngx_acs_gen_map_open(&gen);

    if (ngx_acs_render_ids(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, out);
}


ngx_int_t
ngx_acs_build_voip(ngx_acs_render_t *rd, ngx_str_t *out)
{
    ngx_acs_gen_t  gen;

    if (ngx_acs_render_open(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "aps");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "data");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_render_call(rd, &gen, 1);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, out);
}


ngx_int_t
ngx_acs_build_fcmv1(ngx_acs_render_t *rd, ngx_str_t *out)
{
    u_char         buf[NGX_TIME_T_LEN + 1];
    ngx_str_t      ttl;
    ngx_uint_t     call;
    ngx_acs_gen_t  gen;

    call = (rd->msg->intent == NGX_ACS_INTENT_INCOMING_CALL);

    ttl.data = buf;
    ttl.len = ngx_sprintf(buf, "%Ts", (rd->ttl >= 0)
                                      ? rd->ttl : NGX_ACS_CALL_TTL_UNLIMITED)
              - buf;

    if (ngx_acs_render_open(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "message");
    ngx_acs_gen_map_open(&gen);

    if (!call) {
        ngx_acs_gen_key(&gen, "notification");
        ngx_acs_gen_map_open(&gen);

        if (rd->title.len) {
            ngx_acs_gen_pair(&gen, "title", &rd->title);
        }

        ngx_acs_gen_pair(&gen, "body", &rd->text);
        ngx_acs_gen_map_close(&gen);
    }

    ngx_acs_gen_key(&gen, "data");
    ngx_acs_gen_map_open(&gen);

    if (call) {
        ngx_acs_render_call(rd, &gen, 0);

    } else if (ngx_acs_render_ids(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "android");
    ngx_acs_gen_map_open(&gen);

    ngx_acs_gen_key(&gen, "priority");
    ngx_acs_gen_cstr(&gen, "high");

    if (call) {
        /* a duration of FCM v1: seconds and "s" */
        ngx_acs_gen_key(&gen, "ttl");
        ngx_acs_gen_str(&gen, &ttl);
    }

    /*
     * FCM keeps only 4 collapse keys per offline device: a key per chat
     * message would lose messages.  Calls (short TTL) carry one; chat
     * messages rely on de-duplication instead.
     */

    if (call && rd->msg->collapse.len) {
        ngx_acs_gen_pair(&gen, "collapse_key", &rd->msg->collapse);
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);
    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, out);
}


ngx_int_t
ngx_acs_build_browser(ngx_acs_render_t *rd, ngx_str_t *out)
{
    ngx_uint_t     call;
    ngx_acs_gen_t  gen;

    call = (rd->msg->intent == NGX_ACS_INTENT_INCOMING_CALL);

    if (ngx_acs_render_open(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    if (call) {
        ngx_acs_render_call(rd, &gen, 0);

    } else if (ngx_acs_render_ids(rd, &gen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_pair(&gen, "title", &rd->title);
    ngx_acs_gen_pair(&gen, "body", &rd->text);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, out);
}


ngx_int_t
ngx_acs_build_wns(ngx_acs_render_t *rd, ngx_str_t *out)
{
    size_t      len;
    u_char     *p;
    ngx_str_t   head, tail;

    ngx_str_set(&head,
                "<toast><visual><binding template=\"ToastGeneric\">");
    ngx_str_set(&tail, "</binding></visual></toast>");

    len = head.len + tail.len
          + sizeof("<text></text>") - 1 + ngx_acs_xml_escape_len(&rd->text);

    if (rd->title.len) {
        len += sizeof("<text></text>") - 1
               + ngx_acs_xml_escape_len(&rd->title);
    }

    p = ngx_pnalloc(rd->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, head.data, head.len);

    if (rd->title.len) {
        p = ngx_cpymem(p, "<text>", sizeof("<text>") - 1);
        p = ngx_acs_xml_escape(p, &rd->title);
        p = ngx_cpymem(p, "</text>", sizeof("</text>") - 1);
    }

    p = ngx_cpymem(p, "<text>", sizeof("<text>") - 1);
    p = ngx_acs_xml_escape(p, &rd->text);
    p = ngx_cpymem(p, "</text>", sizeof("</text>") - 1);

    p = ngx_cpymem(p, tail.data, tail.len);

    out->len = p - out->data;

    return NGX_OK;
}


/* renders, and shortens the texts until the payload fits */

static ngx_int_t
ngx_acs_render_fit(ngx_acs_render_t *rd, ngx_acs_build_pt build,
    ngx_str_t *out)
{
    size_t      excess;
    ngx_int_t   rc;
    ngx_uint_t  n;

    for (n = 0; n < NGX_ACS_SHRINK_MAX; n++) {

        rc = build(rd, out);
        if (rc != NGX_OK) {
            return rc;
        }

        if (out->len <= rd->platform->limit) {
            return NGX_OK;
        }

        excess = out->len - rd->platform->limit;

        if (rd->text.len) {
            rc = ngx_acs_render_shorten(rd, &rd->text, excess);

        } else if (rd->title.len) {
            rc = ngx_acs_render_shorten(rd, &rd->title, excess);

        } else {
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_DECLINED;
}


/*
 * Shortens s so that its escaped form is at least excess bytes shorter,
 * ellipsis included: cut on a UTF-8 character boundary and ended with
 * U+2026, or emptied when nothing of it would fit.
 */

static ngx_int_t
ngx_acs_render_shorten(ngx_acs_render_t *rd, ngx_str_t *s,
    size_t excess)
{
    u_char  *p;
    size_t   len, cost, budget, c;

    cost = 0;

    for (len = 0; len < s->len; len++) {
        cost += ngx_acs_render_cost(rd, s->data[len]);
    }

    if (cost <= excess + NGX_ACS_ELLIPSIS_LEN) {
        s->len = 0;
        return NGX_OK;
    }

    budget = cost - excess - NGX_ACS_ELLIPSIS_LEN;
    cost = 0;

    for (len = 0; len < s->len; len++) {
        c = ngx_acs_render_cost(rd, s->data[len]);

        if (cost + c > budget) {
            break;
        }

        cost += c;
    }

    while (len > 0 && (s->data[len] & 0xc0) == 0x80) {
        len--;
    }

    if (len == 0) {
        s->len = 0;
        return NGX_OK;
    }

    p = ngx_pnalloc(rd->pool, len + NGX_ACS_ELLIPSIS_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, s->data, len);
    ngx_memcpy(p + len, NGX_ACS_ELLIPSIS, NGX_ACS_ELLIPSIS_LEN);

    s->data = p;
    s->len = len + NGX_ACS_ELLIPSIS_LEN;

    return NGX_OK;
}


/* the size of a byte of text once escaped as yajl_gen or toast XML do */

static size_t
ngx_acs_render_cost(ngx_acs_render_t *rd, u_char c)
{
    if (rd->platform->markup == NGX_ACS_MARKUP_XML) {

        switch (c) {

        case '&':
            return sizeof("&amp;") - 1;

        case '<':
        case '>':
            return sizeof("&lt;") - 1;

        case '"':
        case '\'':
            return sizeof("&quot;") - 1;

        default:
            return 1;
        }
    }

    switch (c) {

    case '"':
    case '\\':
    case '\n':
    case '\r':
    case '\t':
    case '\b':
    case '\f':
        return 2;

    default:
        return (c < 0x20) ? sizeof("\\u0000") - 1 : 1;
    }
}


/* a JSON payload opened */

static ngx_int_t
ngx_acs_render_open(ngx_acs_render_t *rd, ngx_acs_gen_t *gen)
{
    if (ngx_acs_gen_init(gen, rd->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_open(gen);

    return NGX_OK;
}


/* the ids of a chat push, or of a call shown as an alert */

static ngx_int_t
ngx_acs_render_ids(ngx_acs_render_t *rd, ngx_acs_gen_t *gen)
{
    ngx_acs_gen_pair(gen, "eventId", &rd->msg->id);
    ngx_acs_gen_pair(gen, "eventType", &rd->msg->type);

    switch (rd->msg->intent) {

    case NGX_ACS_INTENT_CHAT_MESSAGE:
        ngx_acs_gen_pair(gen, "threadId", &rd->msg->thread_id);
        ngx_acs_gen_pair(gen, "messageId", &rd->msg->message_id);
        ngx_acs_gen_pair(gen, "senderId", &rd->msg->sender_id);
        break;

    case NGX_ACS_INTENT_CHAT_ADDED:
        ngx_acs_gen_pair(gen, "threadId", &rd->msg->thread_id);
        ngx_acs_gen_pair(gen, "senderId", &rd->msg->sender_id);
        break;

    case NGX_ACS_INTENT_INCOMING_CALL:
        ngx_acs_gen_pair(gen, "callId", &rd->msg->call_id);
        ngx_acs_gen_pair(gen, "callerId", &rd->msg->sender_id);
        ngx_acs_gen_pair(gen, "recipientId", &rd->msg->recipient);
        break;

    case NGX_ACS_INTENT_NONE:
        ngx_log_error(NGX_LOG_ALERT, rd->pool->log, 0,
                      "acs_notify: the payload of event \"%V\" has no "
                      "intent", &rd->msg->id);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the incoming-call keys of the ACS calling SDKs */

static void
ngx_acs_render_call(ngx_acs_render_t *rd, ngx_acs_gen_t *gen,
    ngx_uint_t numeric)
{
    ngx_acs_gen_key(gen, "eventId");

    if (numeric) {
        ngx_acs_gen_int(gen, NGX_ACS_CALL_PUSH_EVENT);

    } else {
        ngx_acs_gen_cstr(gen, "107");
    }

    ngx_acs_gen_pair(gen, "cp", &rd->msg->cp);
    ngx_acs_gen_pair(gen, "callId", &rd->msg->call_id);
    ngx_acs_gen_pair(gen, "recipientId", &rd->msg->recipient);
    ngx_acs_gen_pair(gen, "callerId", &rd->msg->sender_id);
    ngx_acs_gen_pair(gen, "displayName", &rd->msg->display_name);

    ngx_acs_gen_key(gen, "videoCall");
    ngx_acs_gen_cstr(gen, "false");
}


static void
ngx_acs_render_header_str(ngx_acs_render_t *rd, u_char *name,
    size_t name_len, u_char *value, size_t value_len)
{
    rd->header->name.data = name;
    rd->header->name.len = name_len;
    rd->header->value.data = value;
    rd->header->value.len = value_len;
    rd->header++;
}


/* APNs alerts and VoIP pushes alike: a newer push of the id replaces it */

static void
ngx_acs_render_collapse(ngx_acs_render_t *rd)
{
    if (rd->msg->collapse.len) {
        ngx_acs_render_header_value(rd, "apns-collapse-id",
                                    &rd->msg->collapse);
    }
}
