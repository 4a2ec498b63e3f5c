
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Routing and the message of an event.
 *
 * Routing.  Only five ACS event types are pushed; everything else is
 * NGX_DECLINED.  The table of event types also names those the status
 * page counts.  The recipient is an identifier model in "data"; its push
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
 * Texts.  TITLE and BODY of the pushes (a title that is empty is left out
 * by the payload builders, docs/dispatch.md has the table):
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
 * Ids are empty when missing from the event.  COLLAPSE is the event id
 * when it is at most 64 printable ASCII bytes, else the lower-case hex
 * SHA-256 of it, so a redelivered event collapses on the device.  CP, for
 * a call, is the "cc" of the JSON in the base64url-decoded second segment
 * of incomingCallContext, or "" when that cannot be had: the call push
 * goes out regardless.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_tree.h>
#include <openssl/evp.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_json.h"
#include "ngx_acs_event.h"
#include "ngx_acs_device.h"
#include "ngx_acs_route.h"


#define NGX_ACS_TYPE_PREFIX          "Microsoft.Communication."
#define NGX_ACS_COLLAPSE_MAX         64     /* apns-collapse-id */

#define NGX_ACS_ADDED_ID                                                      \
    "participantadded.participantcommunicationidentifier"


struct ngx_acs_route_rule_s {
    ngx_str_t                   name;        /* after the prefix */
    ngx_acs_intent_e            intent;
    char                       *recipient;   /* identifier path */
    char                       *sender;      /* sender, adder or caller */
};


typedef struct {
    ngx_pool_t                 *pool;
    ngx_acs_event_t            *ev;
    ngx_acs_route_t            *route;
    ngx_flag_t                  preview;
    ngx_acs_msg_t              *msg;
} ngx_acs_msg_ctx_t;


static ngx_int_t ngx_acs_identifier(ngx_pool_t *pool, ngx_acs_event_t *ev,
    char *prefix, ngx_str_t *raw_id);
static ngx_str_t *ngx_acs_field_string(ngx_acs_event_t *ev, char *prefix,
    char *suffix);
static void ngx_acs_field_ctext(ngx_acs_event_t *ev, char *path,
    ngx_str_t *value);
static ngx_int_t ngx_acs_msg_collapse(ngx_acs_msg_ctx_t *ctx);
static ngx_int_t ngx_acs_msg_ids(ngx_acs_msg_ctx_t *ctx);
static ngx_int_t ngx_acs_msg_texts(ngx_acs_msg_ctx_t *ctx);
static ngx_int_t ngx_acs_msg_added_texts(ngx_acs_msg_ctx_t *ctx);
static void ngx_acs_msg_adder_name(ngx_acs_msg_ctx_t *ctx, ngx_str_t *name);
static ngx_int_t ngx_acs_msg_cp(ngx_acs_msg_ctx_t *ctx);


/*
 * Every event type the module knows, in the order of the status page: the
 * five pushed have an intent, the others are counted only.
 */

static ngx_acs_route_rule_t  ngx_acs_route_rules[] = {

    { ngx_string("ChatMessageReceived"), NGX_ACS_INTENT_CHAT_MESSAGE,
      "recipientcommunicationidentifier",
      "sendercommunicationidentifier" },

    { ngx_string("ChatMessageReceivedInThread"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("ChatMessageEdited"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("ChatMessageEditedInThread"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("ChatMessageDeleted"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("ChatMessageDeletedInThread"), NGX_ACS_INTENT_NONE,
      NULL, NULL },

    { ngx_string("ChatThreadCreatedWithUser"), NGX_ACS_INTENT_CHAT_ADDED,
      "recipientcommunicationidentifier",
      "createdbycommunicationidentifier" },

    { ngx_string("ChatThreadCreated"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("ChatThreadWithUserDeleted"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("ChatThreadDeleted"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("ChatThreadPropertiesUpdatedPerUser"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("ChatThreadPropertiesUpdated"), NGX_ACS_INTENT_NONE,
      NULL, NULL },

    { ngx_string("ChatParticipantAddedToThreadWithUser"),
      NGX_ACS_INTENT_CHAT_ADDED,
      "recipientcommunicationidentifier",
      "addedbycommunicationidentifier" },

    { ngx_string("ChatParticipantRemovedFromThreadWithUser"),
      NGX_ACS_INTENT_NONE, NULL, NULL },

    { ngx_string("ChatThreadParticipantAdded"), NGX_ACS_INTENT_CHAT_ADDED,
      NGX_ACS_ADDED_ID, "addedbycommunicationidentifier" },

    { ngx_string("ChatThreadParticipantRemoved"), NGX_ACS_INTENT_NONE,
      NULL, NULL },

    { ngx_string("IncomingCall"), NGX_ACS_INTENT_INCOMING_CALL,
      "to", "from" },

    { ngx_string("CallStarted"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("CallEnded"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("CallParticipantAdded"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("CallParticipantRemoved"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("SMSReceived"), NGX_ACS_INTENT_NONE, NULL, NULL },
    { ngx_string("SMSDeliveryReportReceived"), NGX_ACS_INTENT_NONE,
      NULL, NULL },

    /* Event Grid's own ("Microsoft.EventGrid.X") */
    { ngx_string("SubscriptionValidationEvent"), NGX_ACS_INTENT_NONE,
      NULL, NULL },
    { ngx_string("SubscriptionDeletedEvent"), NGX_ACS_INTENT_NONE,
      NULL, NULL }
};

#define NGX_ACS_ROUTE_RULES                                                   \
    (sizeof(ngx_acs_route_rules) / sizeof(ngx_acs_route_rule_t))

static ngx_uint_t ngx_acs_route_find(u_char *name, size_t len);

/* a type of the status page per row, and "other", or this does not compile */
typedef char  ngx_acs_route_types_all[
    (NGX_ACS_ROUTE_RULES + 1 == NGX_ACS_EVENT_TYPES) ? 1 : -1];


ngx_int_t
ngx_acs_route(ngx_pool_t *pool, ngx_acs_event_t *ev, ngx_acs_route_t *route)
{
    ngx_int_t              rc;
    ngx_str_t              sender;
    ngx_acs_route_rule_t  *rule;

    route->intent = NGX_ACS_INTENT_NONE;
    route->rule = NULL;
    ngx_str_null(&route->recipient);

    rule = ngx_acs_route_rule(&ev->type, 0);
    if (rule == NULL) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "acs_notify route: event \"%V\": type \"%V\" is not "
                       "pushed", ngx_acs_log_str(pool, &ev->id),
                       ngx_acs_log_str(pool, &ev->type));
        return NGX_DECLINED;
    }

    if (ngx_acs_identifier(pool, ev, rule->recipient, &route->recipient)
        != NGX_OK
        || route->recipient.len > NGX_ACS_RAW_ID_MAX)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                       "acs_notify route: event \"%V\": no recipient at "
                       "\"%s\"", ngx_acs_log_str(pool, &ev->id),
                       rule->recipient);
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
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                           "acs_notify route: event \"%V\": \"%V\" added "
                           "themselves, not pushed",
                           ngx_acs_log_str(pool, &ev->id),
                           ngx_acs_log_str(pool, &sender));
            return NGX_DECLINED;
        }
    }

    route->intent = rule->intent;
    route->rule = rule;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "acs_notify route: event \"%V\" (%V) for \"%V\"",
                   ngx_acs_log_str(pool, &ev->id), &rule->name,
                   ngx_acs_log_str(pool, &route->recipient));

    return NGX_OK;
}


ngx_int_t
ngx_acs_message(ngx_pool_t *pool, ngx_acs_event_t *ev, ngx_acs_route_t *route,
    ngx_flag_t preview, ngx_uint_t keep_event, ngx_acs_msg_t *msg)
{
    ngx_uint_t          i;
    ngx_str_t          *s[13];
    ngx_acs_msg_ctx_t   ctx;

    ngx_memzero(msg, sizeof(ngx_acs_msg_t));

    ctx.pool = pool;
    ctx.ev = ev;
    ctx.route = route;
    ctx.preview = preview;
    ctx.msg = msg;

    msg->intent = route->intent;
    msg->rule = route->rule;
    msg->id = ev->id;
    msg->type = ev->type;
    msg->subject = ev->subject;
    msg->recipient = route->recipient;

    if (ngx_acs_msg_collapse(&ctx) != NGX_OK
        || ngx_acs_msg_ids(&ctx) != NGX_OK
        || ngx_acs_msg_texts(&ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (route->intent == NGX_ACS_INTENT_INCOMING_CALL
        && ngx_acs_msg_cp(&ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* what points into the event goes with the request: copies */

    s[0] = &msg->id;
    s[1] = &msg->type;
    s[2] = &msg->subject;
    s[3] = &msg->recipient;
    s[4] = &msg->title;
    s[5] = &msg->text;
    s[6] = &msg->collapse;
    s[7] = &msg->thread_id;
    s[8] = &msg->message_id;
    s[9] = &msg->sender_id;
    s[10] = &msg->call_id;
    s[11] = &msg->display_name;
    s[12] = &msg->cp;

    for (i = 0; i < 13; i++) {
        if (ngx_acs_event_dup(pool, s[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (keep_event) {
        msg->event = ngx_acs_event_copy(pool, ev);
        if (msg->event == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * The rule of an event type: "Microsoft.Communication.X" (any case), or
 * "X" alone when short_ok.
 */

ngx_acs_route_rule_t *
ngx_acs_route_rule(ngx_str_t *type, ngx_uint_t short_ok)
{
    size_t                 len;
    u_char                *p;
    ngx_uint_t             i;
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

    i = ngx_acs_route_find(p, len);

    if (i == NGX_ACS_ROUTE_RULES) {
        return NULL;
    }

    rule = &ngx_acs_route_rules[i];

    return (rule->intent == NGX_ACS_INTENT_NONE) ? NULL : rule;
}


ngx_uint_t
ngx_acs_route_type(ngx_str_t *type)
{
    u_char      *p;
    size_t       len;
    ngx_uint_t   i;

    /* "Microsoft.Communication.X" and "Microsoft.EventGrid.X": X */

    p = type->data;
    len = type->len;

    for (i = len; i > 0; i--) {
        if (p[i - 1] == '.') {
            break;
        }
    }

    return ngx_acs_route_find(p + i, len - i);
}


/* the row of a short type name ("ChatMessageReceived"), any case */

static ngx_uint_t
ngx_acs_route_find(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_ACS_ROUTE_RULES; i++) {
        if (ngx_acs_route_rules[i].name.len == len
            && ngx_strncasecmp(ngx_acs_route_rules[i].name.data, name, len)
               == 0)
        {
            break;
        }
    }

    return i;
}


char *
ngx_acs_route_type_name(ngx_uint_t i)
{
    static u_char  other[] = "other";

    return (char *) ((i < NGX_ACS_ROUTE_RULES)
                     ? ngx_acs_route_rules[i].name.data : other);
}


u_char *
ngx_acs_route_names(u_char *p, u_char *end, const char *last)
{
    ngx_uint_t  i, n, pushed;

    pushed = 0;

    for (i = 0; i < NGX_ACS_ROUTE_RULES; i++) {
        pushed += (ngx_acs_route_rules[i].intent != NGX_ACS_INTENT_NONE);
    }

    n = 0;

    for (i = 0; i < NGX_ACS_ROUTE_RULES; i++) {

        if (ngx_acs_route_rules[i].intent == NGX_ACS_INTENT_NONE) {
            continue;
        }

        p = ngx_snprintf(p, end - p, "%s%V",
                         (n == 0) ? "" : (n == pushed - 1) ? last : ", ",
                         &ngx_acs_route_rules[i].name);
        n++;
    }

    return p;
}


ngx_acs_intent_e
ngx_acs_route_intent(ngx_acs_route_rule_t *rule)
{
    return rule->intent;
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


static void
ngx_acs_field_ctext(ngx_acs_event_t *ev, char *path, ngx_str_t *value)
{
    ngx_str_t  p;

    p.data = (u_char *) path;
    p.len = ngx_strlen(path);

    ngx_acs_event_text(ev, &p, value);
}


/*
 * apns-collapse-id and collapse_key: the event id itself when it is a safe
 * header value of at most 64 bytes, else the hex SHA-256 of it (64 bytes).
 */

static ngx_int_t
ngx_acs_msg_collapse(ngx_acs_msg_ctx_t *ctx)
{
    u_char        *p, *last;
    ngx_str_t     *id;
    unsigned int   n;
    u_char         md[EVP_MAX_MD_SIZE];

    id = &ctx->ev->id;

    if (id->len == 0) {
        ngx_str_set(&ctx->msg->collapse, "");
        return NGX_OK;
    }

    if (id->len <= NGX_ACS_COLLAPSE_MAX) {

        for (p = id->data, last = p + id->len; p < last; p++) {
            if (*p <= 0x20 || *p >= 0x7f) {
                break;
            }
        }

        if (p == last) {
            ctx->msg->collapse.data = ngx_pstrdup(ctx->pool, id);
            if (ctx->msg->collapse.data == NULL) {
                return NGX_ERROR;
            }

            ctx->msg->collapse.len = id->len;
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

    ctx->msg->collapse.data = p;
    ctx->msg->collapse.len = ngx_hex_dump(p, md, n) - p;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_msg_ids(ngx_acs_msg_ctx_t *ctx)
{
    ngx_int_t         rc;
    ngx_str_t        *v;
    ngx_acs_event_t  *ev;

    ev = ctx->ev;

    ngx_acs_field_ctext(ev, "threadid", &ctx->msg->thread_id);
    ngx_acs_field_ctext(ev, "messageid", &ctx->msg->message_id);
    ngx_acs_field_ctext(ev, "correlationid", &ctx->msg->call_id);
    ngx_acs_field_ctext(ev, "callerdisplayname", &ctx->msg->display_name);

    rc = ngx_acs_identifier(ctx->pool, ev, ctx->route->rule->sender,
                            &ctx->msg->sender_id);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        v = (ctx->route->intent == NGX_ACS_INTENT_CHAT_MESSAGE)
            ? ngx_acs_event_string(ev, "senderid") : NULL;

        if (v) {
            ctx->msg->sender_id = *v;

        } else {
            ngx_str_set(&ctx->msg->sender_id, "");
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_msg_texts(ngx_acs_msg_ctx_t *ctx)
{
    u_char     *p;
    ngx_str_t  *who;

    ngx_str_set(&ctx->msg->title, "");

    switch (ctx->route->intent) {

    case NGX_ACS_INTENT_CHAT_MESSAGE:

        if (ctx->preview) {
            ngx_acs_field_ctext(ctx->ev, "senderdisplayname",
                                &ctx->msg->title);
            ngx_acs_field_ctext(ctx->ev, "messagebody", &ctx->msg->text);
        }

        if (ctx->msg->text.len == 0) {
            ngx_str_set(&ctx->msg->text, "New message");
        }

        break;

    case NGX_ACS_INTENT_CHAT_ADDED:

        if (ngx_acs_msg_added_texts(ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        break;

    case NGX_ACS_INTENT_INCOMING_CALL:

        who = ctx->msg->display_name.len ? &ctx->msg->display_name
                                         : &ctx->msg->sender_id;

        if (who->len == 0) {
            ngx_str_set(&ctx->msg->text, "Incoming call");
            break;
        }

        p = ngx_pnalloc(ctx->pool, sizeof("Incoming call from ") - 1
                                   + who->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->msg->text.data = p;
        ctx->msg->text.len = ngx_sprintf(p, "Incoming call from %V", who)
                             - p;
        break;

    case NGX_ACS_INTENT_NONE:
        ngx_log_error(NGX_LOG_ALERT, ctx->pool->log, 0,
                      "acs_notify: the message of event \"%V\" has no "
                      "intent", ngx_acs_log_str(ctx->pool, &ctx->ev->id));
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_msg_added_texts(ngx_acs_msg_ctx_t *ctx)
{
    u_char         *p;
    ngx_int_t       rc;
    ngx_str_t       added, name, topic;
    ngx_uint_t      other;
    ngx_acs_msg_t  *msg;

    msg = ctx->msg;

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

    ngx_str_set(&msg->title, "New chat");

    if (!ctx->preview) {

        if (other) {
            ngx_str_set(&msg->text, "A participant was added to the chat");

        } else {
            ngx_str_set(&msg->text, "You were added to a chat");
        }

        return NGX_OK;
    }

    ngx_acs_field_ctext(ctx->ev, "properties.topic", &topic);

    if (topic.len) {
        msg->title = topic;
    }

    if (other) {
        ngx_acs_field_ctext(ctx->ev, "participantadded.displayname", &name);

        if (name.len == 0) {
            ngx_str_set(&msg->text, "A participant was added to the chat");
            return NGX_OK;
        }

        p = ngx_pnalloc(ctx->pool, name.len
                                   + sizeof(" was added to the chat") - 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        msg->text.data = p;
        msg->text.len = ngx_sprintf(p, "%V was added to the chat", &name) - p;

        return NGX_OK;
    }

    ngx_acs_msg_adder_name(ctx, &name);

    if (name.len == 0) {
        ngx_str_set(&msg->text, "You were added to a chat");
        return NGX_OK;
    }

    p = ngx_pnalloc(ctx->pool, sizeof("You were added to a chat by ") - 1
                               + name.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    msg->text.data = p;
    msg->text.len = ngx_sprintf(p, "You were added to a chat by %V", &name)
                    - p;

    return NGX_OK;
}


/*
 * The display name of the creator or adder: the events carry only its
 * identifier, but ChatThreadCreatedWithUser lists the participants with
 * their display names.
 */

static void
ngx_acs_msg_adder_name(ngx_acs_msg_ctx_t *ctx, ngx_str_t *name)
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

    if (ctx->msg->sender_id.len == 0) {
        return;
    }

    f = ctx->ev->fields.elts;

    for (i = 0; i < ctx->ev->fields.nelts; i++) {

        if (f[i].type != NGX_ACS_JSON_STRING
            || f[i].value.len != ctx->msg->sender_id.len
            || f[i].path.len <= head.len + tail.len
            || ngx_strncmp(f[i].path.data, head.data, head.len) != 0
            || ngx_strncmp(f[i].path.data + f[i].path.len - tail.len,
                           tail.data, tail.len)
               != 0
            || ngx_strncmp(f[i].value.data, ctx->msg->sender_id.data,
                           ctx->msg->sender_id.len)
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

        ngx_acs_event_text(ctx->ev, &path, name);

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
ngx_acs_msg_cp(ngx_acs_msg_ctx_t *ctx)
{
    u_char     *p, *last, *start, *q;
    yajl_val    tree;
    ngx_str_t  *icc, seg, json, cc;

    ngx_str_set(&ctx->msg->cp, "");

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
        ctx->msg->cp = cc;
    }

    return NGX_OK;
}
