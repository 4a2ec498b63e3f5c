
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Routing and rendering (DESIGN 7, PROTOCOLS 2, 3.3, 3.5).
 *
 * Routing.  Only five ACS event types are pushed; everything else is
 * NGX_DECLINED.  The recipient is an identifier model in "data"; its push
 * key is rawId, else communicationUser.id, else "4:" + phoneNumber.value:
 *
 *     ChatMessageReceived                   recipientCommunicationIdentifier
 *     ChatThreadCreatedWithUser             recipientCommunicationIdentifier
 *     ChatParticipantAddedToThreadWithUser  recipientCommunicationIdentifier
 *     ChatThreadParticipantAdded            participantAdded.participant...
 *     IncomingCall                          to
 *
 * The three "added" events are declined (not an error) when the recipient
 * is the one who created the thread or added the participant: nobody needs
 * a push about what they did themselves.
 *
 * Texts.  TITLE and BODY below (a title that is empty is left out):
 *
 *     chat message, acs_notify_preview on:   sender display name, text
 *         ("New message" when the text is empty)
 *     chat message, preview off:             no title, "New message"
 *     added, preview on:   topic or "New chat",
 *         "You were added to a chat[ by <adder>]" for the one added, or
 *         "<name> was added to the chat" for the other members
 *     added, preview off:  "New chat", "You were added to a chat" or
 *         "A participant was added to the chat" (no topic, no names)
 *     incoming call:       no title, "Incoming call from <callerDisplayName,
 *         else the caller's raw id>" (the caller is shown either way, as
 *         ACS's own VoIP push does)
 *
 * Payloads (all JSON is generated with yajl_gen; ids are strings, empty
 * when missing from the event; COLLAPSE is the event id when it is at most
 * 64 printable ASCII bytes, else the lower-case hex SHA-256 of it, so a
 * redelivered event collapses on the device):
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
 * apns, incoming call (same headers):
 *     {"aps":{"alert":{"body":"Incoming call from Alice"},"sound":"default"},
 *      "acs":{"eventId":ID,"eventType":TYPE,"callId":CORRELATION,
 *             "callerId":FROM,"recipientId":TO}}
 *
 * apns-voip, incoming call only (push->voip = 1; apns-push-type: voip,
 * apns-priority: 10, apns-expiration: 0, apns-collapse-id: COLLAPSE):
 *     {"aps":{},"data":{"eventId":107,"cp":CC,"callId":CORRELATION,
 *      "recipientId":TO,"callerId":FROM,"displayName":NAME,
 *      "videoCall":"false"}}
 *     CC is the "cc" of the JSON in the base64url-decoded second segment of
 *     incomingCallContext, or "" when that cannot be had: the call push goes
 *     out regardless.
 *
 * fcmv1, chat:
 *     {"message":{"notification":{"title":TITLE,"body":BODY},
 *      "data":{the "acs" object of apns},
 *      "android":{"priority":"high"}}}
 *     (no collapse_key: FCM keeps 4 per offline device, see below)
 *
 * fcmv1, incoming call (a data message):
 *     {"message":{"data":{"eventId":"107","cp":CC,...,"videoCall":"false"},
 *      "android":{"priority":"high","ttl":"60s","collapse_key":COLLAPSE}}}
 *
 * wns (X-WNS-Type: wns/toast), any intent:
 *     <toast><visual><binding template="ToastGeneric"><text>TITLE</text>
 *     <text>BODY</text></binding></visual></toast>
 *
 * browser (Auth, P256DH headers): the fcmv1 "data" object of the intent
 * plus "title" and "body" (always both, "" when empty).
 *
 * Size limits: apple and fcmv1 4096 bytes, browser 4096, windows 5120.  A
 * payload over the limit has its BODY, then its TITLE cut on a UTF-8
 * character boundary and ended with "..." (U+2026), and is rendered again;
 * a payload that cannot fit even with both emptied (voip and data messages
 * have nothing to cut) is NGX_DECLINED.
 *
 * Templates (acs_notify_template EVENT_TYPE PLATFORM PAYLOAD) replace the
 * built-in body, never the headers.  ${data.PATH} is the scalar at PATH in
 * "data" (any case; array elements by index: ${data.participants.0.rawId};
 * numbers and booleans as their JSON text), ${id}, ${type} or ${eventType},
 * ${subject}, ${topic} or ${source}, ${time} or ${eventTime}, ${dataVersion}
 * are the envelope; ${recipientId}, ${cp}, ${collapseId}, ${title} and
 * ${body} are what the built-in payload would use (the texts as above,
 * acs_notify_preview applied, not shortened).  Names are letters, digits,
 * "_", "-" and "."; envelope names match in any case.  Values are
 * JSON-escaped (XML-escaped for wns), so a placeholder belongs inside a
 * JSON string; a missing value is "".  A template is compiled into literal
 * and placeholder parts and checked at configuration time (JSON of the
 * platform's shape with every placeholder as "x"; XML-looking for wns);
 * one that renders over the size limit is NGX_DECLINED, not shortened.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>
#include <openssl/evp.h>

#include "ngx_acs_json.h"
#include "ngx_acs_event.h"
#include "ngx_acs_registry.h"
#include "ngx_acs_auth.h"
#include "ngx_acs_render.h"


#define NGX_ACS_TYPE_PREFIX          "Microsoft.Communication."
#define NGX_ACS_PAYLOAD_BROWSER_MAX  4096   /* a web push record */
#define NGX_ACS_COLLAPSE_MAX         64     /* apns-collapse-id */
#define NGX_ACS_CALL_PUSH_EVENT      107    /* the calling SDK's push id */
#define NGX_ACS_SHRINK_MAX           8
#define NGX_ACS_ELLIPSIS             "\xe2\x80\xa6"
#define NGX_ACS_ELLIPSIS_LEN         3

#define NGX_ACS_ADDED_ID                                                      \
    "participantadded.participantcommunicationidentifier"


typedef struct {
    ngx_str_t                   name;        /* after the prefix */
    ngx_acs_intent_e            intent;
    char                       *recipient;   /* identifier path */
    char                       *sender;      /* sender, adder or caller */
} ngx_acs_route_rule_t;


typedef enum {
    NGX_ACS_TPL_LITERAL = 0,
    NGX_ACS_TPL_DATA,
    NGX_ACS_TPL_ID,
    NGX_ACS_TPL_TYPE,
    NGX_ACS_TPL_SUBJECT,
    NGX_ACS_TPL_TOPIC,
    NGX_ACS_TPL_TIME,
    NGX_ACS_TPL_DATA_VERSION,
    NGX_ACS_TPL_RECIPIENT,
    NGX_ACS_TPL_CP,
    NGX_ACS_TPL_COLLAPSE,
    NGX_ACS_TPL_TITLE,
    NGX_ACS_TPL_BODY
} ngx_acs_tpl_part_e;


typedef struct {
    ngx_str_t                   name;
    ngx_acs_tpl_part_e          type;
} ngx_acs_tpl_name_t;


typedef struct {
    ngx_acs_tpl_part_e          type;
    ngx_str_t                   text;        /* literal, or lower-case path */
} ngx_acs_tpl_part_t;


struct ngx_acs_template_s {
    ngx_acs_route_rule_t       *rule;
    ngx_acs_platform_e          platform;
    ngx_array_t                 parts;       /* of ngx_acs_tpl_part_t */
};


typedef struct {
    ngx_pool_t                 *pool;
    ngx_acs_render_conf_t      *conf;
    ngx_acs_event_t            *ev;
    ngx_acs_route_t            *route;
    ngx_acs_route_rule_t       *rule;
    ngx_acs_device_t           *dev;

    size_t                      limit;
    ngx_uint_t                  xml;         /* unsigned:1 */
    ngx_uint_t                  cp_done;     /* unsigned:1 */

    ngx_str_t                   title;
    ngx_str_t                   text;
    ngx_str_t                   full_title;  /* before any shortening */
    ngx_str_t                   full_text;
    ngx_str_t                   collapse;
    ngx_str_t                   thread_id;
    ngx_str_t                   message_id;
    ngx_str_t                   sender_id;
    ngx_str_t                   call_id;
    ngx_str_t                   display_name;
    ngx_str_t                   cp;
} ngx_acs_render_ctx_t;


typedef ngx_int_t (*ngx_acs_render_pt)(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);


typedef struct {
    yajl_gen                    g;
    yajl_gen_status             rc;
} ngx_acs_gen_t;


static ngx_acs_route_rule_t *ngx_acs_route_rule(ngx_str_t *type,
    ngx_uint_t short_ok);
static ngx_int_t ngx_acs_identifier(ngx_pool_t *pool, ngx_acs_event_t *ev,
    char *prefix, ngx_str_t *raw_id);
static ngx_str_t *ngx_acs_field_string(ngx_acs_event_t *ev, char *prefix,
    char *suffix);
static void ngx_acs_field_text(ngx_acs_event_t *ev, ngx_str_t *path,
    ngx_str_t *value);
static void ngx_acs_field_ctext(ngx_acs_event_t *ev, char *path,
    ngx_str_t *value);

static ngx_int_t ngx_acs_render_collapse(ngx_acs_render_ctx_t *ctx);
static ngx_int_t ngx_acs_render_ids(ngx_acs_render_ctx_t *ctx);
static ngx_int_t ngx_acs_render_texts(ngx_acs_render_ctx_t *ctx);
static ngx_int_t ngx_acs_render_added_texts(ngx_acs_render_ctx_t *ctx);
static void ngx_acs_render_adder_name(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *name);
static ngx_int_t ngx_acs_render_cp(ngx_acs_render_ctx_t *ctx);
static ngx_int_t ngx_acs_render_fit(ngx_acs_render_ctx_t *ctx,
    ngx_acs_render_pt build, ngx_str_t *out);
static ngx_int_t ngx_acs_render_shorten(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *s, size_t excess);
static size_t ngx_acs_render_cost(ngx_acs_render_ctx_t *ctx, u_char c);
static void ngx_acs_render_header(ngx_acs_push_t *push, char *name,
    ngx_str_t *value);

static ngx_int_t ngx_acs_render_open(ngx_acs_render_ctx_t *ctx,
    ngx_acs_gen_t *gen, ngx_uint_t call);
static ngx_int_t ngx_acs_render_apns(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);
static ngx_int_t ngx_acs_render_voip(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);
static ngx_int_t ngx_acs_render_fcmv1(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);
static ngx_int_t ngx_acs_render_browser(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);
static ngx_int_t ngx_acs_render_wns(ngx_acs_render_ctx_t *ctx,
    ngx_str_t *out);
static void ngx_acs_render_gen_ids(ngx_acs_render_ctx_t *ctx,
    ngx_acs_gen_t *gen);
static void ngx_acs_render_gen_call(ngx_acs_render_ctx_t *ctx,
    ngx_acs_gen_t *gen, ngx_uint_t numeric);

static ngx_acs_template_t *ngx_acs_template_find(ngx_acs_render_ctx_t *ctx);
static ngx_int_t ngx_acs_template_render(ngx_acs_render_ctx_t *ctx,
    ngx_acs_template_t *tpl, ngx_str_t *out);
static ngx_int_t ngx_acs_template_value(ngx_acs_render_ctx_t *ctx,
    ngx_acs_tpl_part_t *part, ngx_str_t *value);
static char *ngx_acs_template_parse(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload);
static char *ngx_acs_template_placeholder(ngx_conf_t *cf,
    ngx_acs_tpl_part_t *part, ngx_str_t *name);
static char *ngx_acs_template_check(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform);
static char *ngx_acs_template_check_json(ngx_conf_t *cf,
    ngx_acs_template_t *tpl, yajl_val root, ngx_str_t *event_type,
    ngx_str_t *platform);

static size_t ngx_acs_xml_escape_len(ngx_str_t *s);
static u_char *ngx_acs_xml_escape(u_char *dst, ngx_str_t *s);

static ngx_int_t ngx_acs_gen_init(ngx_acs_gen_t *gen, ngx_pool_t *pool);
static ngx_int_t ngx_acs_gen_done(ngx_acs_gen_t *gen, ngx_pool_t *pool,
    ngx_str_t *out);
static void ngx_acs_gen_key(ngx_acs_gen_t *gen, char *key);
static void ngx_acs_gen_str(ngx_acs_gen_t *gen, ngx_str_t *value);
static void ngx_acs_gen_cstr(ngx_acs_gen_t *gen, char *value);
static void ngx_acs_gen_pair(ngx_acs_gen_t *gen, char *key,
    ngx_str_t *value);
static void ngx_acs_gen_int(ngx_acs_gen_t *gen, ngx_int_t n);
static void ngx_acs_gen_map_open(ngx_acs_gen_t *gen);
static void ngx_acs_gen_map_close(ngx_acs_gen_t *gen);
static void *ngx_acs_yajl_malloc(void *ctx, size_t size);
static void *ngx_acs_yajl_realloc(void *ctx, void *ptr, size_t size);
static void ngx_acs_yajl_free(void *ctx, void *ptr);


static ngx_acs_route_rule_t  ngx_acs_route_rules[] = {

    { ngx_string("ChatMessageReceived"), NGX_ACS_INTENT_CHAT_MESSAGE,
      "recipientcommunicationidentifier",
      "sendercommunicationidentifier" },

    { ngx_string("ChatThreadCreatedWithUser"), NGX_ACS_INTENT_CHAT_ADDED,
      "recipientcommunicationidentifier",
      "createdbycommunicationidentifier" },

    { ngx_string("ChatParticipantAddedToThreadWithUser"),
      NGX_ACS_INTENT_CHAT_ADDED,
      "recipientcommunicationidentifier",
      "addedbycommunicationidentifier" },

    { ngx_string("ChatThreadParticipantAdded"), NGX_ACS_INTENT_CHAT_ADDED,
      NGX_ACS_ADDED_ID, "addedbycommunicationidentifier" },

    { ngx_string("IncomingCall"), NGX_ACS_INTENT_INCOMING_CALL,
      "to", "from" },

    { ngx_null_string, NGX_ACS_INTENT_NONE, NULL, NULL }
};


static ngx_acs_tpl_name_t  ngx_acs_tpl_names[] = {
    { ngx_string("id"), NGX_ACS_TPL_ID },
    { ngx_string("type"), NGX_ACS_TPL_TYPE },
    { ngx_string("eventType"), NGX_ACS_TPL_TYPE },
    { ngx_string("subject"), NGX_ACS_TPL_SUBJECT },
    { ngx_string("topic"), NGX_ACS_TPL_TOPIC },
    { ngx_string("source"), NGX_ACS_TPL_TOPIC },
    { ngx_string("time"), NGX_ACS_TPL_TIME },
    { ngx_string("eventTime"), NGX_ACS_TPL_TIME },
    { ngx_string("dataVersion"), NGX_ACS_TPL_DATA_VERSION },
    { ngx_string("recipientId"), NGX_ACS_TPL_RECIPIENT },
    { ngx_string("cp"), NGX_ACS_TPL_CP },
    { ngx_string("collapseId"), NGX_ACS_TPL_COLLAPSE },
    { ngx_string("title"), NGX_ACS_TPL_TITLE },
    { ngx_string("body"), NGX_ACS_TPL_BODY },
    { ngx_null_string, NGX_ACS_TPL_LITERAL }
};


static ngx_str_t  ngx_acs_json_type =
    ngx_string("application/json;charset=utf-8");
static ngx_str_t  ngx_acs_xml_type = ngx_string("application/xml");


ngx_int_t
ngx_acs_route(ngx_pool_t *pool, ngx_acs_event_t *ev, ngx_acs_route_t *route)
{
    ngx_int_t              rc;
    ngx_str_t              sender;
    ngx_acs_route_rule_t  *rule;

    route->intent = NGX_ACS_INTENT_NONE;
    ngx_str_null(&route->recipient);

    rule = ngx_acs_route_rule(&ev->type, 0);
    if (rule == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_acs_identifier(pool, ev, rule->recipient, &route->recipient)
        != NGX_OK
        || route->recipient.len > NGX_ACS_RAW_ID_MAX)
    {
        ngx_str_null(&route->recipient);
        return NGX_ERROR;
    }

    if (rule->intent == NGX_ACS_INTENT_CHAT_ADDED) {

        /* the creator or adder is not told what they did themselves */

        rc = ngx_acs_identifier(pool, ev, rule->sender, &sender);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK
            && sender.len == route->recipient.len
            && ngx_strncmp(sender.data, route->recipient.data, sender.len)
               == 0)
        {
            return NGX_DECLINED;
        }
    }

    route->intent = rule->intent;

    return NGX_OK;
}


ngx_int_t
ngx_acs_render(ngx_pool_t *pool, ngx_acs_render_conf_t *conf,
    ngx_acs_event_t *ev, ngx_acs_route_t *route, ngx_acs_device_t *dev,
    ngx_acs_push_t *push)
{
    ngx_int_t              rc;
    ngx_str_t              body, format, *type, v;
    ngx_uint_t             voip;
    ngx_acs_render_pt      build;
    ngx_acs_template_t    *tpl;
    ngx_acs_render_ctx_t   ctx;

    ngx_memzero(push, sizeof(ngx_acs_push_t));
    ngx_memzero(&ctx, sizeof(ngx_acs_render_ctx_t));

    ctx.pool = pool;
    ctx.conf = conf;
    ctx.ev = ev;
    ctx.route = route;
    ctx.dev = dev;

    ctx.rule = ngx_acs_route_rule(&ev->type, 0);
    if (ctx.rule == NULL || ctx.rule->intent != route->intent) {
        return NGX_DECLINED;
    }

    voip = 0;
    type = &ngx_acs_json_type;

    switch (dev->platform) {

    case NGX_ACS_PLATFORM_APNS:
        ngx_str_set(&format, "apple");
        ctx.limit = NGX_ACS_PAYLOAD_APNS_MAX;
        build = ngx_acs_render_apns;
        break;

    case NGX_ACS_PLATFORM_APNS_VOIP:

        /* iOS allows VoIP pushes only for calls */

        if (route->intent != NGX_ACS_INTENT_INCOMING_CALL) {
            return NGX_DECLINED;
        }

        ngx_str_set(&format, "apple");
        ctx.limit = NGX_ACS_PAYLOAD_APNS_MAX;
        build = ngx_acs_render_voip;
        voip = 1;
        break;

    case NGX_ACS_PLATFORM_FCMV1:
        ngx_str_set(&format, "fcmv1");
        ctx.limit = NGX_ACS_PAYLOAD_FCM_MAX;
        build = ngx_acs_render_fcmv1;
        break;

    case NGX_ACS_PLATFORM_WNS:
        ngx_str_set(&format, "windows");
        type = &ngx_acs_xml_type;
        ctx.limit = NGX_ACS_PAYLOAD_WNS_MAX;
        ctx.xml = 1;
        build = ngx_acs_render_wns;
        break;

    case NGX_ACS_PLATFORM_BROWSER:

        /* Notification Hubs refuses a web push without the keys */

        if (dev->auth.len == 0 || dev->p256dh.len == 0) {
            return NGX_DECLINED;
        }

        ngx_str_set(&format, "browser");
        ctx.limit = NGX_ACS_PAYLOAD_BROWSER_MAX;
        build = ngx_acs_render_browser;
        break;

    default:
        return NGX_DECLINED;
    }

    if (ngx_acs_render_collapse(&ctx) != NGX_OK
        || ngx_acs_render_ids(&ctx) != NGX_OK
        || ngx_acs_render_texts(&ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    tpl = ngx_acs_template_find(&ctx);

    if (tpl) {
        rc = ngx_acs_template_render(&ctx, tpl, &body);

    } else {
        rc = ngx_acs_render_fit(&ctx, build, &body);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    push->format = format;
    push->content_type = *type;
    push->body = body;
    push->voip = voip;

    switch (dev->platform) {

    case NGX_ACS_PLATFORM_APNS:
    case NGX_ACS_PLATFORM_APNS_VOIP:

        if (voip) {
            ngx_str_set(&v, "voip");
            ngx_acs_render_header(push, "apns-push-type", &v);
            ngx_str_set(&v, "10");
            ngx_acs_render_header(push, "apns-priority", &v);
            ngx_str_set(&v, "0");
            ngx_acs_render_header(push, "apns-expiration", &v);

        } else {
            ngx_str_set(&v, "alert");
            ngx_acs_render_header(push, "apns-push-type", &v);
            ngx_str_set(&v, "10");
            ngx_acs_render_header(push, "apns-priority", &v);
        }

        if (ctx.collapse.len) {
            ngx_acs_render_header(push, "apns-collapse-id", &ctx.collapse);
        }

        break;

    case NGX_ACS_PLATFORM_WNS:
        ngx_str_set(&v, "wns/toast");
        ngx_acs_render_header(push, "X-WNS-Type", &v);
        break;

    case NGX_ACS_PLATFORM_BROWSER:

        v.len = dev->auth.len;
        v.data = ngx_pstrdup(pool, &dev->auth);
        if (v.data == NULL) {
            return NGX_ERROR;
        }

        ngx_acs_render_header(push, "Auth", &v);

        v.len = dev->p256dh.len;
        v.data = ngx_pstrdup(pool, &dev->p256dh);
        if (v.data == NULL) {
            return NGX_ERROR;
        }

        ngx_acs_render_header(push, "P256DH", &v);
        break;

    default:
        break;
    }

    return NGX_OK;
}


char *
ngx_acs_template_add(ngx_conf_t *cf, ngx_array_t **templates,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload)
{
    char                  *rv;
    ngx_int_t              n;
    ngx_uint_t             i;
    ngx_acs_template_t    *tpl;
    ngx_acs_route_rule_t  *rule;

    rule = ngx_acs_route_rule(event_type, 1);
    if (rule == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: event type \"%V\" is never "
                           "pushed, use ChatMessageReceived, "
                           "ChatThreadCreatedWithUser, "
                           "ChatParticipantAddedToThreadWithUser, "
                           "ChatThreadParticipantAdded or IncomingCall",
                           event_type);
        return NGX_CONF_ERROR;
    }

    n = ngx_acs_platform(platform);
    if (n == NGX_DECLINED) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: unknown platform \"%V\", "
                           "use apns, apns-voip, fcmv1, wns or browser",
                           platform);
        return NGX_CONF_ERROR;
    }

    if (n == NGX_ACS_PLATFORM_APNS_VOIP
        && rule->intent != NGX_ACS_INTENT_INCOMING_CALL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: apns-voip devices get only "
                           "IncomingCall pushes, a template for \"%V\" "
                           "would never be used", event_type);
        return NGX_CONF_ERROR;
    }

    if (*templates == NULL || *templates == NGX_CONF_UNSET_PTR) {
        *templates = ngx_array_create(cf->pool, 4,
                                      sizeof(ngx_acs_template_t));
        if (*templates == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    tpl = (*templates)->elts;

    for (i = 0; i < (*templates)->nelts; i++) {
        if (tpl[i].rule == rule && tpl[i].platform == (ngx_acs_platform_e) n) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template: duplicate template for "
                               "\"%V\" on \"%V\"", event_type, platform);
            return NGX_CONF_ERROR;
        }
    }

    tpl = ngx_array_push(*templates);
    if (tpl == NULL) {
        return NGX_CONF_ERROR;
    }

    tpl->rule = rule;
    tpl->platform = n;

    if (ngx_array_init(&tpl->parts, cf->pool, 8, sizeof(ngx_acs_tpl_part_t))
        != NGX_OK)
    {
        (*templates)->nelts--;
        return NGX_CONF_ERROR;
    }

    rv = ngx_acs_template_parse(cf, tpl, event_type, platform, payload);

    if (rv == NGX_CONF_OK) {
        rv = ngx_acs_template_check(cf, tpl, event_type, platform);
    }

    if (rv != NGX_CONF_OK) {
        (*templates)->nelts--;
    }

    return rv;
}


/*
 * The rule of an event type: "Microsoft.Communication.X" (any case), or
 * "X" alone when short_ok (the template directive allows that).
 */

static ngx_acs_route_rule_t *
ngx_acs_route_rule(ngx_str_t *type, ngx_uint_t short_ok)
{
    size_t                 len;
    u_char                *p;
    ngx_acs_route_rule_t  *rule;

    p = type->data;
    len = type->len;

    if (len > sizeof(NGX_ACS_TYPE_PREFIX) - 1
        && ngx_strncasecmp(p, (u_char *) NGX_ACS_TYPE_PREFIX,
                           sizeof(NGX_ACS_TYPE_PREFIX) - 1)
           == 0)
    {
        p += sizeof(NGX_ACS_TYPE_PREFIX) - 1;
        len -= sizeof(NGX_ACS_TYPE_PREFIX) - 1;

    } else if (!short_ok) {
        return NULL;
    }

    for (rule = ngx_acs_route_rules; rule->name.len; rule++) {
        if (rule->name.len == len
            && ngx_strncasecmp(rule->name.data, p, len) == 0)
        {
            return rule;
        }
    }

    return NULL;
}


/*
 * The raw id of the identifier model at prefix: rawId, communicationUser.id
 * or "4:" + phoneNumber.value.  NGX_DECLINED when there is none.
 */

static ngx_int_t
ngx_acs_identifier(ngx_pool_t *pool, ngx_acs_event_t *ev, char *prefix,
    ngx_str_t *raw_id)
{
    u_char     *p;
    ngx_str_t  *v;

    v = ngx_acs_field_string(ev, prefix, "rawid");

    if (v == NULL) {
        v = ngx_acs_field_string(ev, prefix, "communicationuser.id");
    }

    if (v) {
        *raw_id = *v;
        return NGX_OK;
    }

    v = ngx_acs_field_string(ev, prefix, "phonenumber.value");
    if (v == NULL) {
        ngx_str_null(raw_id);
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, 2 + v->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    raw_id->data = p;
    p = ngx_cpymem(p, "4:", 2);
    p = ngx_cpymem(p, v->data, v->len);
    raw_id->len = p - raw_id->data;

    return NGX_OK;
}


/* the non-empty string at "prefix.suffix" in data, or NULL */

static ngx_str_t *
ngx_acs_field_string(ngx_acs_event_t *ev, char *prefix, char *suffix)
{
    u_char      *p;
    ngx_str_t   *v;
    u_char       path[NGX_ACS_EVENT_PATH_MAX + 1];

    p = ngx_snprintf(path, NGX_ACS_EVENT_PATH_MAX, "%s.%s", prefix, suffix);
    *p = '\0';

    v = ngx_acs_event_string(ev, (char *) path);

    if (v == NULL || v->len == 0) {
        return NULL;
    }

    return v;
}


/* a scalar of data as text (string, number or boolean), else "" */

static void
ngx_acs_field_text(ngx_acs_event_t *ev, ngx_str_t *path, ngx_str_t *value)
{
    ngx_acs_field_t  *f;

    f = ngx_acs_event_field(ev, path);

    if (f == NULL || f->type == NGX_ACS_JSON_NULL) {
        ngx_str_set(value, "");
        return;
    }

    *value = f->value;
}


static void
ngx_acs_field_ctext(ngx_acs_event_t *ev, char *path, ngx_str_t *value)
{
    ngx_str_t  p;

    p.data = (u_char *) path;
    p.len = ngx_strlen(path);

    ngx_acs_field_text(ev, &p, value);
}


/*
 * apns-collapse-id and collapse_key: the event id itself when it is a safe
 * header value of at most 64 bytes, else the hex SHA-256 of it (64 bytes).
 */

static ngx_int_t
ngx_acs_render_collapse(ngx_acs_render_ctx_t *ctx)
{
    u_char        *p, *last;
    ngx_str_t     *id;
    unsigned int   n;
    u_char         md[EVP_MAX_MD_SIZE];

    id = &ctx->ev->id;

    if (id->len == 0) {
        ngx_str_set(&ctx->collapse, "");
        return NGX_OK;
    }

    if (id->len <= NGX_ACS_COLLAPSE_MAX) {

        for (p = id->data, last = p + id->len; p < last; p++) {
            if (*p <= 0x20 || *p >= 0x7f) {
                break;
            }
        }

        if (p == last) {
            ctx->collapse.data = ngx_pstrdup(ctx->pool, id);
            if (ctx->collapse.data == NULL) {
                return NGX_ERROR;
            }

            ctx->collapse.len = id->len;
            return NGX_OK;
        }
    }

    if (EVP_Digest(id->data, id->len, md, &n, ngx_acs_sha256(), NULL) != 1) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(ctx->pool, 2 * n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->collapse.data = p;
    ctx->collapse.len = ngx_hex_dump(p, md, n) - p;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_render_ids(ngx_acs_render_ctx_t *ctx)
{
    ngx_int_t         rc;
    ngx_str_t        *v;
    ngx_acs_event_t  *ev;

    ev = ctx->ev;

    ngx_acs_field_ctext(ev, "threadid", &ctx->thread_id);
    ngx_acs_field_ctext(ev, "messageid", &ctx->message_id);
    ngx_acs_field_ctext(ev, "correlationid", &ctx->call_id);
    ngx_acs_field_ctext(ev, "callerdisplayname", &ctx->display_name);

    rc = ngx_acs_identifier(ctx->pool, ev, ctx->rule->sender,
                            &ctx->sender_id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        v = (ctx->route->intent == NGX_ACS_INTENT_CHAT_MESSAGE)
            ? ngx_acs_event_string(ev, "senderid") : NULL;

        if (v) {
            ctx->sender_id = *v;

        } else {
            ngx_str_set(&ctx->sender_id, "");
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_render_texts(ngx_acs_render_ctx_t *ctx)
{
    u_char     *p;
    ngx_str_t  *who;

    ngx_str_set(&ctx->title, "");

    switch (ctx->route->intent) {

    case NGX_ACS_INTENT_CHAT_MESSAGE:

        if (ctx->conf->preview) {
            ngx_acs_field_ctext(ctx->ev, "senderdisplayname", &ctx->title);
            ngx_acs_field_ctext(ctx->ev, "messagebody", &ctx->text);
        }

        if (ctx->text.len == 0) {
            ngx_str_set(&ctx->text, "New message");
        }

        break;

    case NGX_ACS_INTENT_CHAT_ADDED:

        if (ngx_acs_render_added_texts(ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        break;

    default: /* NGX_ACS_INTENT_INCOMING_CALL */

        who = ctx->display_name.len ? &ctx->display_name : &ctx->sender_id;

        if (who->len == 0) {
            ngx_str_set(&ctx->text, "Incoming call");
            break;
        }

        p = ngx_pnalloc(ctx->pool, sizeof("Incoming call from ") - 1
                                   + who->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->text.data = p;
        ctx->text.len = ngx_sprintf(p, "Incoming call from %V", who) - p;
        break;
    }

    ctx->full_title = ctx->title;
    ctx->full_text = ctx->text;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_render_added_texts(ngx_acs_render_ctx_t *ctx)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   added, name, topic;
    ngx_uint_t  other;

    rc = ngx_acs_identifier(ctx->pool, ctx->ev, NGX_ACS_ADDED_ID, &added);
    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    /* ChatParticipantAddedToThreadWithUser also goes to the old members */

    other = (rc == NGX_OK
             && (added.len != ctx->route->recipient.len
                 || ngx_strncmp(added.data, ctx->route->recipient.data,
                                added.len)
                    != 0));

    ngx_str_set(&ctx->title, "New chat");

    if (!ctx->conf->preview) {

        if (other) {
            ngx_str_set(&ctx->text, "A participant was added to the chat");

        } else {
            ngx_str_set(&ctx->text, "You were added to a chat");
        }

        return NGX_OK;
    }

    ngx_acs_field_ctext(ctx->ev, "properties.topic", &topic);

    if (topic.len) {
        ctx->title = topic;
    }

    if (other) {
        ngx_acs_field_ctext(ctx->ev, "participantadded.displayname", &name);

        if (name.len == 0) {
            ngx_str_set(&ctx->text, "A participant was added to the chat");
            return NGX_OK;
        }

        p = ngx_pnalloc(ctx->pool, name.len
                                   + sizeof(" was added to the chat") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->text.data = p;
        ctx->text.len = ngx_sprintf(p, "%V was added to the chat", &name) - p;

        return NGX_OK;
    }

    ngx_acs_render_adder_name(ctx, &name);

    if (name.len == 0) {
        ngx_str_set(&ctx->text, "You were added to a chat");
        return NGX_OK;
    }

    p = ngx_pnalloc(ctx->pool, sizeof("You were added to a chat by ") - 1
                               + name.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ctx->text.data = p;
    ctx->text.len = ngx_sprintf(p, "You were added to a chat by %V", &name)
                    - p;

    return NGX_OK;
}


/*
 * The display name of the creator or adder: the events carry only its
 * identifier, but ChatThreadCreatedWithUser lists the participants with
 * their display names.
 */

static void
ngx_acs_render_adder_name(ngx_acs_render_ctx_t *ctx, ngx_str_t *name)
{
    size_t            n;
    u_char           *p, *last;
    ngx_str_t         path, head, tail;
    ngx_uint_t        i;
    ngx_acs_field_t  *f;
    u_char            buf[NGX_ACS_EVENT_PATH_MAX];

    ngx_str_set(&head, "participants.");
    ngx_str_set(&tail, ".participantcommunicationidentifier.rawid");
    ngx_str_set(name, "");

    if (ctx->sender_id.len == 0) {
        return;
    }

    f = ctx->ev->fields.elts;

    for (i = 0; i < ctx->ev->fields.nelts; i++) {

        if (f[i].type != NGX_ACS_JSON_STRING
            || f[i].value.len != ctx->sender_id.len
            || f[i].path.len <= head.len + tail.len
            || ngx_strncmp(f[i].path.data, head.data, head.len) != 0
            || ngx_strncmp(f[i].path.data + f[i].path.len - tail.len,
                           tail.data, tail.len)
               != 0
            || ngx_strncmp(f[i].value.data, ctx->sender_id.data,
                           ctx->sender_id.len)
               != 0)
        {
            continue;
        }

        /* "participants.N" + ".displayname" */

        n = f[i].path.len - tail.len;

        if (n + sizeof(".displayname") - 1 > sizeof(buf)) {
            continue;
        }

        p = ngx_cpymem(buf, f[i].path.data, n);
        last = ngx_cpymem(p, ".displayname", sizeof(".displayname") - 1);

        path.data = buf;
        path.len = last - buf;

        ngx_acs_field_text(ctx->ev, &path, name);

        if (name->len) {
            return;
        }
    }
}


/*
 * The compact call context: "cc" of the JSON in the second segment of
 * incomingCallContext, base64url with or without padding (standard base64
 * is taken too).  Anything wrong leaves it empty: the push goes out anyway.
 */

static ngx_int_t
ngx_acs_render_cp(ngx_acs_render_ctx_t *ctx)
{
    u_char     *p, *last, *start, *q;
    yajl_val    tree;
    ngx_str_t  *icc, seg, json, cc;

    if (ctx->cp_done) {
        return NGX_OK;
    }

    ctx->cp_done = 1;
    ngx_str_set(&ctx->cp, "");

    icc = ngx_acs_event_string(ctx->ev, "incomingcallcontext");
    if (icc == NULL) {
        return NGX_OK;
    }

    last = icc->data + icc->len;

    start = ngx_strlchr(icc->data, last, '.');
    if (start == NULL) {
        return NGX_OK;
    }

    start++;

    p = ngx_strlchr(start, last, '.');
    if (p == NULL) {
        p = last;
    }

    while (p > start && p[-1] == '=') {
        p--;
    }

    if (p == start) {
        return NGX_OK;
    }

    seg.len = p - start;
    seg.data = ngx_pnalloc(ctx->pool, seg.len);
    if (seg.data == NULL) {
        return NGX_ERROR;
    }

    for (q = seg.data; start < p; start++) {
        *q++ = (*start == '+') ? '-' : ((*start == '/') ? '_' : *start);
    }

    if (ngx_acs_base64url_decode(ctx->pool, &seg, &json) != NGX_OK) {
        return NGX_OK;
    }

    tree = ngx_acs_json_tree(ctx->pool, &json);
    if (tree == NULL) {
        return NGX_OK;
    }

    if (ngx_acs_json_tree_string(tree, "cc", &cc) == NGX_OK) {
        ctx->cp = cc;
    }

    return NGX_OK;
}


/* renders, and shortens the texts until the payload fits */

static ngx_int_t
ngx_acs_render_fit(ngx_acs_render_ctx_t *ctx, ngx_acs_render_pt build,
    ngx_str_t *out)
{
    size_t      excess;
    ngx_int_t   rc;
    ngx_uint_t  n;

    for (n = 0; n < NGX_ACS_SHRINK_MAX; n++) {

        rc = build(ctx, out);
        if (rc != NGX_OK) {
            return rc;
        }

        if (out->len <= ctx->limit) {
            return NGX_OK;
        }

        excess = out->len - ctx->limit;

        if (ctx->text.len) {
            rc = ngx_acs_render_shorten(ctx, &ctx->text, excess);

        } else if (ctx->title.len) {
            rc = ngx_acs_render_shorten(ctx, &ctx->title, excess);

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
ngx_acs_render_shorten(ngx_acs_render_ctx_t *ctx, ngx_str_t *s,
    size_t excess)
{
    u_char  *p;
    size_t   len, cost, budget, c;

    cost = 0;

    for (len = 0; len < s->len; len++) {
        cost += ngx_acs_render_cost(ctx, s->data[len]);
    }

    if (cost <= excess + NGX_ACS_ELLIPSIS_LEN) {
        s->len = 0;
        return NGX_OK;
    }

    budget = cost - excess - NGX_ACS_ELLIPSIS_LEN;
    cost = 0;

    for (len = 0; len < s->len; len++) {
        c = ngx_acs_render_cost(ctx, s->data[len]);

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

    p = ngx_pnalloc(ctx->pool, len + NGX_ACS_ELLIPSIS_LEN);
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
ngx_acs_render_cost(ngx_acs_render_ctx_t *ctx, u_char c)
{
    if (ctx->xml) {

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


static void
ngx_acs_render_header(ngx_acs_push_t *push, char *name, ngx_str_t *value)
{
    ngx_acs_header_t  *h;

    if (push->nheaders == sizeof(push->headers) / sizeof(push->headers[0])) {
        return;
    }

    h = &push->headers[push->nheaders++];

    h->name.data = (u_char *) name;
    h->name.len = ngx_strlen(name);
    h->value = *value;
}


/* a JSON payload opened; for a call, its cp is extracted first */

static ngx_int_t
ngx_acs_render_open(ngx_acs_render_ctx_t *ctx, ngx_acs_gen_t *gen,
    ngx_uint_t call)
{
    if (call && ngx_acs_render_cp(ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_acs_gen_init(gen, ctx->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_map_open(gen);

    return NGX_OK;
}


static ngx_int_t
ngx_acs_render_apns(ngx_acs_render_ctx_t *ctx, ngx_str_t *out)
{
    ngx_acs_gen_t  gen;

    if (ngx_acs_render_open(ctx, &gen, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "aps");
    ngx_acs_gen_map_open(&gen);

    ngx_acs_gen_key(&gen, "alert");
    ngx_acs_gen_map_open(&gen);

    if (ctx->title.len) {
        ngx_acs_gen_pair(&gen, "title", &ctx->title);
    }

    ngx_acs_gen_pair(&gen, "body", &ctx->text);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "sound");
    ngx_acs_gen_cstr(&gen, "default");

    if (ctx->route->intent != NGX_ACS_INTENT_INCOMING_CALL) {

        if (ctx->thread_id.len) {
            ngx_acs_gen_pair(&gen, "thread-id", &ctx->thread_id);
        }

        ngx_acs_gen_key(&gen, "mutable-content");
        ngx_acs_gen_int(&gen, 1);
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "acs");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_render_gen_ids(ctx, &gen);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, ctx->pool, out);
}


static ngx_int_t
ngx_acs_render_voip(ngx_acs_render_ctx_t *ctx, ngx_str_t *out)
{
    ngx_acs_gen_t  gen;

    if (ngx_acs_render_open(ctx, &gen, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "aps");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "data");
    ngx_acs_gen_map_open(&gen);
    ngx_acs_render_gen_call(ctx, &gen, 1);
    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, ctx->pool, out);
}


static ngx_int_t
ngx_acs_render_fcmv1(ngx_acs_render_ctx_t *ctx, ngx_str_t *out)
{
    ngx_uint_t     call;
    ngx_acs_gen_t  gen;

    call = (ctx->route->intent == NGX_ACS_INTENT_INCOMING_CALL);

    if (ngx_acs_render_open(ctx, &gen, call) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_acs_gen_key(&gen, "message");
    ngx_acs_gen_map_open(&gen);

    if (!call) {
        ngx_acs_gen_key(&gen, "notification");
        ngx_acs_gen_map_open(&gen);

        if (ctx->title.len) {
            ngx_acs_gen_pair(&gen, "title", &ctx->title);
        }

        ngx_acs_gen_pair(&gen, "body", &ctx->text);
        ngx_acs_gen_map_close(&gen);
    }

    ngx_acs_gen_key(&gen, "data");
    ngx_acs_gen_map_open(&gen);

    if (call) {
        ngx_acs_render_gen_call(ctx, &gen, 0);

    } else {
        ngx_acs_render_gen_ids(ctx, &gen);
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_key(&gen, "android");
    ngx_acs_gen_map_open(&gen);

    ngx_acs_gen_key(&gen, "priority");
    ngx_acs_gen_cstr(&gen, "high");

    if (call) {
        ngx_acs_gen_key(&gen, "ttl");
        ngx_acs_gen_cstr(&gen, "60s");
    }

    /*
     * FCM keeps only 4 collapse keys per offline device: a key per chat
     * message would lose messages.  Calls (60s TTL) carry one; chat
     * messages rely on de-duplication instead.
     */

    if (call && ctx->collapse.len) {
        ngx_acs_gen_pair(&gen, "collapse_key", &ctx->collapse);
    }

    ngx_acs_gen_map_close(&gen);

    ngx_acs_gen_map_close(&gen);
    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, ctx->pool, out);
}


static ngx_int_t
ngx_acs_render_browser(ngx_acs_render_ctx_t *ctx, ngx_str_t *out)
{
    ngx_uint_t     call;
    ngx_acs_gen_t  gen;

    call = (ctx->route->intent == NGX_ACS_INTENT_INCOMING_CALL);

    if (ngx_acs_render_open(ctx, &gen, call) != NGX_OK) {
        return NGX_ERROR;
    }

    if (call) {
        ngx_acs_render_gen_call(ctx, &gen, 0);

    } else {
        ngx_acs_render_gen_ids(ctx, &gen);
    }

    ngx_acs_gen_pair(&gen, "title", &ctx->title);
    ngx_acs_gen_pair(&gen, "body", &ctx->text);

    ngx_acs_gen_map_close(&gen);

    return ngx_acs_gen_done(&gen, ctx->pool, out);
}


static ngx_int_t
ngx_acs_render_wns(ngx_acs_render_ctx_t *ctx, ngx_str_t *out)
{
    size_t      len;
    u_char     *p;
    ngx_str_t   head, tail;

    ngx_str_set(&head,
                "<toast><visual><binding template=\"ToastGeneric\">");
    ngx_str_set(&tail, "</binding></visual></toast>");

    len = head.len + tail.len
          + sizeof("<text></text>") - 1 + ngx_acs_xml_escape_len(&ctx->text);

    if (ctx->title.len) {
        len += sizeof("<text></text>") - 1
               + ngx_acs_xml_escape_len(&ctx->title);
    }

    p = ngx_pnalloc(ctx->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    p = ngx_cpymem(p, head.data, head.len);

    if (ctx->title.len) {
        p = ngx_cpymem(p, "<text>", sizeof("<text>") - 1);
        p = ngx_acs_xml_escape(p, &ctx->title);
        p = ngx_cpymem(p, "</text>", sizeof("</text>") - 1);
    }

    p = ngx_cpymem(p, "<text>", sizeof("<text>") - 1);
    p = ngx_acs_xml_escape(p, &ctx->text);
    p = ngx_cpymem(p, "</text>", sizeof("</text>") - 1);

    p = ngx_cpymem(p, tail.data, tail.len);

    out->len = p - out->data;

    return NGX_OK;
}


/* the ids of a chat push, or of a call shown as an alert */

static void
ngx_acs_render_gen_ids(ngx_acs_render_ctx_t *ctx, ngx_acs_gen_t *gen)
{
    ngx_acs_gen_pair(gen, "eventId", &ctx->ev->id);
    ngx_acs_gen_pair(gen, "eventType", &ctx->ev->type);

    switch (ctx->route->intent) {

    case NGX_ACS_INTENT_CHAT_MESSAGE:
        ngx_acs_gen_pair(gen, "threadId", &ctx->thread_id);
        ngx_acs_gen_pair(gen, "messageId", &ctx->message_id);
        ngx_acs_gen_pair(gen, "senderId", &ctx->sender_id);
        break;

    case NGX_ACS_INTENT_CHAT_ADDED:
        ngx_acs_gen_pair(gen, "threadId", &ctx->thread_id);
        ngx_acs_gen_pair(gen, "senderId", &ctx->sender_id);
        break;

    default: /* NGX_ACS_INTENT_INCOMING_CALL */
        ngx_acs_gen_pair(gen, "callId", &ctx->call_id);
        ngx_acs_gen_pair(gen, "callerId", &ctx->sender_id);
        ngx_acs_gen_pair(gen, "recipientId", &ctx->route->recipient);
        break;
    }
}


/* the incoming-call keys of the ACS calling SDKs (PROTOCOLS 3.5) */

static void
ngx_acs_render_gen_call(ngx_acs_render_ctx_t *ctx, ngx_acs_gen_t *gen,
    ngx_uint_t numeric)
{
    ngx_acs_gen_key(gen, "eventId");

    if (numeric) {
        ngx_acs_gen_int(gen, NGX_ACS_CALL_PUSH_EVENT);

    } else {
        ngx_acs_gen_cstr(gen, "107");
    }

    ngx_acs_gen_pair(gen, "cp", &ctx->cp);
    ngx_acs_gen_pair(gen, "callId", &ctx->call_id);
    ngx_acs_gen_pair(gen, "recipientId", &ctx->route->recipient);
    ngx_acs_gen_pair(gen, "callerId", &ctx->sender_id);
    ngx_acs_gen_pair(gen, "displayName", &ctx->display_name);

    ngx_acs_gen_key(gen, "videoCall");
    ngx_acs_gen_cstr(gen, "false");
}


static ngx_acs_template_t *
ngx_acs_template_find(ngx_acs_render_ctx_t *ctx)
{
    ngx_uint_t           i;
    ngx_array_t         *a;
    ngx_acs_template_t  *tpl;

    a = ctx->conf->templates;

    if (a == NULL || a == NGX_CONF_UNSET_PTR) {
        return NULL;
    }

    tpl = a->elts;

    for (i = 0; i < a->nelts; i++) {
        if (tpl[i].rule == ctx->rule
            && tpl[i].platform == ctx->dev->platform)
        {
            return &tpl[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_acs_template_render(ngx_acs_render_ctx_t *ctx, ngx_acs_template_t *tpl,
    ngx_str_t *out)
{
    size_t               len;
    u_char              *p;
    ngx_str_t            v;
    ngx_uint_t           i;
    ngx_acs_tpl_part_t  *part;

    part = tpl->parts.elts;
    len = 0;

    for (i = 0; i < tpl->parts.nelts; i++) {

        if (part[i].type == NGX_ACS_TPL_LITERAL) {
            len += part[i].text.len;
            continue;
        }

        if (ngx_acs_template_value(ctx, &part[i], &v) != NGX_OK) {
            return NGX_ERROR;
        }

        len += ctx->xml ? ngx_acs_xml_escape_len(&v)
                        : ngx_acs_json_escape_len(&v);
    }

    if (len > ctx->limit) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(ctx->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < tpl->parts.nelts; i++) {

        if (part[i].type == NGX_ACS_TPL_LITERAL) {
            p = ngx_cpymem(p, part[i].text.data, part[i].text.len);
            continue;
        }

        if (ngx_acs_template_value(ctx, &part[i], &v) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ctx->xml ? ngx_acs_xml_escape(p, &v) : ngx_acs_json_escape(p, &v);
    }

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_template_value(ngx_acs_render_ctx_t *ctx, ngx_acs_tpl_part_t *part,
    ngx_str_t *value)
{
    switch (part->type) {

    case NGX_ACS_TPL_DATA:
        ngx_acs_field_text(ctx->ev, &part->text, value);
        break;

    case NGX_ACS_TPL_ID:
        *value = ctx->ev->id;
        break;

    case NGX_ACS_TPL_TYPE:
        *value = ctx->ev->type;
        break;

    case NGX_ACS_TPL_SUBJECT:
        *value = ctx->ev->subject;
        break;

    case NGX_ACS_TPL_TOPIC:
        *value = ctx->ev->topic;
        break;

    case NGX_ACS_TPL_TIME:
        *value = ctx->ev->time;
        break;

    case NGX_ACS_TPL_DATA_VERSION:
        *value = ctx->ev->data_version;
        break;

    case NGX_ACS_TPL_RECIPIENT:
        *value = ctx->route->recipient;
        break;

    case NGX_ACS_TPL_CP:

        if (ctx->route->intent == NGX_ACS_INTENT_INCOMING_CALL
            && ngx_acs_render_cp(ctx) != NGX_OK)
        {
            return NGX_ERROR;
        }

        *value = ctx->cp;
        break;

    case NGX_ACS_TPL_COLLAPSE:
        *value = ctx->collapse;
        break;

    case NGX_ACS_TPL_TITLE:
        *value = ctx->full_title;
        break;

    case NGX_ACS_TPL_BODY:
        *value = ctx->full_text;
        break;

    default: /* NGX_ACS_TPL_LITERAL */
        *value = part->text;
        break;
    }

    if (value->data == NULL) {
        ngx_str_set(value, "");
    }

    return NGX_OK;
}


/* splits the payload into literals and ${...} placeholders */

static char *
ngx_acs_template_parse(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload)
{
    u_char              *p, *q, *last;
    ngx_str_t            name;
    ngx_acs_tpl_part_t  *part;

    p = payload->data;
    last = p + payload->len;

    while (p < last) {

        for (q = p; q + 1 < last; q++) {
            if (q[0] == '$' && q[1] == '{') {
                break;
            }
        }

        if (q + 1 >= last) {
            q = last;
        }

        if (q > p) {
            part = ngx_array_push(&tpl->parts);
            if (part == NULL) {
                return NGX_CONF_ERROR;
            }

            part->type = NGX_ACS_TPL_LITERAL;
            part->text.data = p;
            part->text.len = q - p;
        }

        if (q == last) {
            break;
        }

        name.data = q + 2;

        /* a name is letters, digits, "_", "-" and "." up to the "}" */

        for (p = name.data; p < last; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9')
                  || *p == '_' || *p == '-' || *p == '.'))
            {
                break;
            }
        }

        if (p == last || *p != '}') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: unterminated "
                               "\"${\" at byte %uz of the payload, close the "
                               "placeholder with \"}\"",
                               event_type, platform,
                               (size_t) (q - payload->data));
            return NGX_CONF_ERROR;
        }

        name.len = p - name.data;
        p++;

        if (name.len == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: empty placeholder "
                               "\"${}\" at byte %uz of the payload, name a "
                               "field, e.g. ${data.messageBody}",
                               event_type, platform,
                               (size_t) (q - payload->data));
            return NGX_CONF_ERROR;
        }

        part = ngx_array_push(&tpl->parts);
        if (part == NULL) {
            return NGX_CONF_ERROR;
        }

        if (ngx_acs_template_placeholder(cf, part, &name) != NGX_CONF_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: invalid "
                               "placeholder \"${%V}\" at byte %uz of the "
                               "payload, use ${data.PATH}, ${id}, ${type}, "
                               "${subject}, ${topic}, ${time}, "
                               "${dataVersion}, ${recipientId}, ${cp}, "
                               "${collapseId}, ${title} or ${body}",
                               event_type, platform, &name,
                               (size_t) (q - payload->data));
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_acs_template_placeholder(ngx_conf_t *cf, ngx_acs_tpl_part_t *part,
    ngx_str_t *name)
{
    u_char              *p, *last;
    ngx_acs_tpl_name_t  *n;

    if (name->len > sizeof("data.") - 1
        && ngx_strncasecmp(name->data, (u_char *) "data.",
                           sizeof("data.") - 1)
           == 0)
    {
        part->type = NGX_ACS_TPL_DATA;
        part->text.len = name->len - (sizeof("data.") - 1);

        if (part->text.len > NGX_ACS_EVENT_PATH_MAX) {
            return NGX_CONF_ERROR;
        }

        part->text.data = ngx_pnalloc(cf->pool, part->text.len);
        if (part->text.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_strlow(part->text.data, name->data + sizeof("data.") - 1,
                   part->text.len);

        /* dotted segments, none empty */

        for (p = part->text.data, last = p + part->text.len; p < last; p++) {
            if (*p == '.'
                && (p == part->text.data || p + 1 == last || p[1] == '.'))
            {
                return NGX_CONF_ERROR;
            }
        }

        return NGX_CONF_OK;
    }

    for (n = ngx_acs_tpl_names; n->name.len; n++) {
        if (n->name.len == name->len
            && ngx_strncasecmp(n->name.data, name->data, name->len) == 0)
        {
            part->type = n->type;
            ngx_str_null(&part->text);
            return NGX_CONF_OK;
        }
    }

    return NGX_CONF_ERROR;
}


/*
 * Checks the template with every placeholder replaced by "x": well-formed
 * JSON of the expected shape (or XML-looking for wns) within the limit.
 */

static char *
ngx_acs_template_check(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform)
{
    char                *rv;
    size_t               len, limit;
    u_char              *p, *q, *text;
    yajl_val             root;
    ngx_uint_t           i;
    ngx_acs_tpl_part_t  *part;
    char                 err[256];

    part = tpl->parts.elts;
    len = 0;

    for (i = 0; i < tpl->parts.nelts; i++) {
        len += (part[i].type == NGX_ACS_TPL_LITERAL) ? part[i].text.len : 1;
    }

    switch (tpl->platform) {

    case NGX_ACS_PLATFORM_APNS:
    case NGX_ACS_PLATFORM_APNS_VOIP:
        limit = NGX_ACS_PAYLOAD_APNS_MAX;
        break;

    case NGX_ACS_PLATFORM_FCMV1:
        limit = NGX_ACS_PAYLOAD_FCM_MAX;
        break;

    case NGX_ACS_PLATFORM_WNS:
        limit = NGX_ACS_PAYLOAD_WNS_MAX;
        break;

    default: /* NGX_ACS_PLATFORM_BROWSER */
        limit = NGX_ACS_PAYLOAD_BROWSER_MAX;
        break;
    }

    if (len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: the payload is empty",
                           event_type, platform);
        return NGX_CONF_ERROR;
    }

    if (len > limit) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: the payload is %uz "
                           "bytes without its values, over the %uz-byte "
                           "limit of the platform", event_type, platform,
                           len, limit);
        return NGX_CONF_ERROR;
    }

    text = ngx_pnalloc(cf->temp_pool, len + 1);
    if (text == NULL) {
        return NGX_CONF_ERROR;
    }

    p = text;

    for (i = 0; i < tpl->parts.nelts; i++) {
        if (part[i].type == NGX_ACS_TPL_LITERAL) {
            p = ngx_cpymem(p, part[i].text.data, part[i].text.len);

        } else {
            *p++ = 'x';
        }
    }

    *p = '\0';

    if (tpl->platform == NGX_ACS_PLATFORM_WNS) {

        for (p = text; *p == ' ' || *p == '\t' || *p == '\r' || *p == '\n';
             p++)
        {
            /* void */
        }

        if (ngx_strncmp(p, "<toast", 6) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: the payload must "
                               "be toast XML, starting with \"<toast\"",
                               event_type, platform);
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    if (ngx_strlen(text) != len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: the payload contains "
                           "a NUL byte", event_type, platform);
        return NGX_CONF_ERROR;
    }

    err[0] = '\0';

    root = yajl_tree_parse((const char *) text, err, sizeof(err));

    if (root == NULL) {

        /* yajl's message spans lines and pads them; the log wants one */

        for (p = (u_char *) err, q = p; *p; p++) {

            if (*p == '\n' || *p == '\r' || *p == '\t') {
                *p = ' ';
            }

            if (*p != ' ' || q == (u_char *) err || q[-1] != ' ') {
                *q++ = *p;
            }
        }

        *q = '\0';

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: the payload is not "
                           "valid JSON with every placeholder replaced by "
                           "\"x\" (a placeholder belongs inside a JSON "
                           "string): %s", event_type, platform, err);
        return NGX_CONF_ERROR;
    }

    rv = ngx_acs_template_check_json(cf, tpl, root, event_type, platform);

    yajl_tree_free(root);

    return rv;
}


static char *
ngx_acs_template_check_json(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    yajl_val root, ngx_str_t *event_type, ngx_str_t *platform)
{
    size_t    i;
    yajl_val  v;

    if (!YAJL_IS_OBJECT(root)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: the payload must be "
                           "a JSON object", event_type, platform);
        return NGX_CONF_ERROR;
    }

    switch (tpl->platform) {

    case NGX_ACS_PLATFORM_APNS:
    case NGX_ACS_PLATFORM_APNS_VOIP:

        v = ngx_acs_json_tree_get(root, "aps");

        if (v == NULL || !YAJL_IS_OBJECT(v)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: an APNs payload "
                               "needs an \"aps\" object (\"aps\":{} for "
                               "VoIP)", event_type, platform);
            return NGX_CONF_ERROR;
        }

        break;

    case NGX_ACS_PLATFORM_FCMV1:

        v = ngx_acs_json_tree_get(root, "message");

        if (v == NULL || !YAJL_IS_OBJECT(v)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: an FCM v1 "
                               "payload is {\"message\":{...}}",
                               event_type, platform);
            return NGX_CONF_ERROR;
        }

        if (ngx_acs_json_tree_get(v, "token")
            || ngx_acs_json_tree_get(v, "topic")
            || ngx_acs_json_tree_get(v, "condition"))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: remove "
                               "\"message.token\", \"topic\" and "
                               "\"condition\", Notification Hubs sets the "
                               "target", event_type, platform);
            return NGX_CONF_ERROR;
        }

        v = ngx_acs_json_tree_get(v, "data");

        if (v && !YAJL_IS_OBJECT(v)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_template %V %V: "
                               "\"message.data\" must be an object of "
                               "strings", event_type, platform);
            return NGX_CONF_ERROR;
        }

        for (i = 0; v && i < v->u.object.len; i++) {
            if (!YAJL_IS_STRING(v->u.object.values[i])) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_template %V %V: "
                                   "\"message.data.%s\" must be a string",
                                   event_type, platform,
                                   v->u.object.keys[i]);
                return NGX_CONF_ERROR;
            }
        }

        break;

    default: /* NGX_ACS_PLATFORM_BROWSER */
        break;
    }

    return NGX_CONF_OK;
}


/*
 * For toast XML: the five entities; characters XML 1.0 does not allow
 * even escaped (controls other than tab, CR, LF) become spaces.
 */

static size_t
ngx_acs_xml_escape_len(ngx_str_t *s)
{
    size_t   n;
    u_char  *p, *last;

    n = s->len;

    for (p = s->data, last = p + s->len; p < last; p++) {

        switch (*p) {

        case '&':
            n += sizeof("&amp;") - 2;
            break;

        case '<':
        case '>':
            n += sizeof("&lt;") - 2;
            break;

        case '"':
            n += sizeof("&quot;") - 2;
            break;

        case '\'':
            n += sizeof("&apos;") - 2;
            break;

        default:
            break;
        }
    }

    return n;
}


static u_char *
ngx_acs_xml_escape(u_char *dst, ngx_str_t *s)
{
    u_char  *p, *last;

    for (p = s->data, last = p + s->len; p < last; p++) {

        switch (*p) {

        case '&':
            dst = ngx_cpymem(dst, "&amp;", sizeof("&amp;") - 1);
            break;

        case '<':
            dst = ngx_cpymem(dst, "&lt;", sizeof("&lt;") - 1);
            break;

        case '>':
            dst = ngx_cpymem(dst, "&gt;", sizeof("&gt;") - 1);
            break;

        case '"':
            dst = ngx_cpymem(dst, "&quot;", sizeof("&quot;") - 1);
            break;

        case '\'':
            dst = ngx_cpymem(dst, "&apos;", sizeof("&apos;") - 1);
            break;

        default:

            if ((*p < 0x20 && *p != '\t' && *p != '\r' && *p != '\n')
                || *p == 0x7f)
            {
                *dst++ = ' ';

            } else {
                *dst++ = *p;
            }
        }
    }

    return dst;
}


/*
 * yajl_gen over the pool: no malloc(), nothing to free on an error path.
 * The generator's status is kept in gen->rc; the first failure sticks.
 */

static ngx_int_t
ngx_acs_gen_init(ngx_acs_gen_t *gen, ngx_pool_t *pool)
{
    yajl_alloc_funcs  af;

    af.malloc = ngx_acs_yajl_malloc;
    af.realloc = ngx_acs_yajl_realloc;
    af.free = ngx_acs_yajl_free;
    af.ctx = pool;

    gen->rc = yajl_gen_status_ok;

    gen->g = yajl_gen_alloc(&af);
    if (gen->g == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_gen_done(ngx_acs_gen_t *gen, ngx_pool_t *pool, ngx_str_t *out)
{
    size_t                len;
    const unsigned char  *buf;

    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_get_buf(gen->g, &buf, &len);
    }

    if (gen->rc != yajl_gen_status_ok) {
        yajl_gen_free(gen->g);
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(pool, len);
    if (out->data == NULL) {
        yajl_gen_free(gen->g);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, len);
    out->len = len;

    yajl_gen_free(gen->g);

    return NGX_OK;
}


static void
ngx_acs_gen_key(ngx_acs_gen_t *gen, char *key)
{
    ngx_acs_gen_cstr(gen, key);
}


static void
ngx_acs_gen_str(ngx_acs_gen_t *gen, ngx_str_t *value)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_string(gen->g, value->len ? value->data
                                                     : (u_char *) "",
                                  value->len);
    }
}


static void
ngx_acs_gen_cstr(ngx_acs_gen_t *gen, char *value)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_string(gen->g, (const unsigned char *) value,
                                  ngx_strlen(value));
    }
}


static void
ngx_acs_gen_pair(ngx_acs_gen_t *gen, char *key, ngx_str_t *value)
{
    ngx_acs_gen_key(gen, key);
    ngx_acs_gen_str(gen, value);
}


static void
ngx_acs_gen_int(ngx_acs_gen_t *gen, ngx_int_t n)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_integer(gen->g, n);
    }
}


static void
ngx_acs_gen_map_open(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_map_open(gen->g);
    }
}


static void
ngx_acs_gen_map_close(ngx_acs_gen_t *gen)
{
    if (gen->rc == yajl_gen_status_ok) {
        gen->rc = yajl_gen_map_close(gen->g);
    }
}


/* the allocation functions keep the size in front of each block */

static void *
ngx_acs_yajl_malloc(void *ctx, size_t size)
{
    size_t  *p;

    p = ngx_palloc(ctx, sizeof(size_t) + size);
    if (p == NULL) {
        return NULL;
    }

    *p = size;

    return p + 1;
}


static void *
ngx_acs_yajl_realloc(void *ctx, void *ptr, size_t size)
{
    void    *p;
    size_t   old;

    if (ptr == NULL) {
        return ngx_acs_yajl_malloc(ctx, size);
    }

    old = ((size_t *) ptr)[-1];

    if (size <= old) {
        return ptr;
    }

    p = ngx_acs_yajl_malloc(ctx, size);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, ptr, old);
    ngx_acs_yajl_free(ctx, ptr);

    return p;
}


static void
ngx_acs_yajl_free(void *ctx, void *ptr)
{
    if (ptr) {
        (void) ngx_pfree(ctx, (size_t *) ptr - 1);
    }
}
