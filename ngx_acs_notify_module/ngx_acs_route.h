
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Routing (which ACS event goes to whom, and as what) and the event's
 * message: everything a push needs that depends on the event alone,
 * worked out once per event, whatever the number of devices.  Plain
 * functions over event records (ngx_acs_event.h), no HTTP.
 */


#ifndef _NGX_ACS_ROUTE_H_INCLUDED_
#define _NGX_ACS_ROUTE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_event.h"


typedef enum {
    NGX_ACS_INTENT_NONE = 0,
    NGX_ACS_INTENT_CHAT_MESSAGE,     /* ChatMessageReceived */
    NGX_ACS_INTENT_CHAT_ADDED,       /* added to a chat thread */
    NGX_ACS_INTENT_INCOMING_CALL     /* IncomingCall */
} ngx_acs_intent_e;


typedef struct ngx_acs_route_rule_s  ngx_acs_route_rule_t;


typedef struct {
    ngx_acs_intent_e            intent;
    ngx_acs_route_rule_t       *rule;
    ngx_str_t                   recipient;   /* raw id, the registry key */
} ngx_acs_route_t;


/*
 * What the pushes of one event say.  Every string is a copy in the pool
 * the message was made in, so that it outlives the request (pushes go on
 * after an "accepted" answer).  Empty strings where the event has nothing.
 */

typedef struct {
    ngx_acs_intent_e            intent;
    ngx_acs_route_rule_t       *rule;

    ngx_str_t                   id;
    ngx_str_t                   type;
    ngx_str_t                   subject;
    ngx_str_t                   recipient;

    ngx_str_t                   title;       /* acs_notify_preview applied */
    ngx_str_t                   text;
    ngx_str_t                   collapse;    /* apns-collapse-id */
    ngx_str_t                   thread_id;
    ngx_str_t                   message_id;
    ngx_str_t                   sender_id;   /* sender, creator, adder or
                                                caller */
    ngx_str_t                   call_id;
    ngx_str_t                   display_name;
    ngx_str_t                   cp;          /* a call's compact context */

    ngx_acs_event_t            *event;       /* a copy for templates */
} ngx_acs_msg_t;


/*
 * NGX_OK: the event is for route->recipient, as route->intent.
 * NGX_DECLINED: no push for this event type, or for this recipient (the
 * one who created the thread or added the participant).
 * NGX_ERROR: a pushable event without a usable recipient.
 * The recipient points into the event, or into pool for a phone number
 * ("4:" + phoneNumber.value).
 */
ngx_int_t ngx_acs_route(ngx_pool_t *pool, ngx_acs_event_t *ev,
    ngx_acs_route_t *route);

/*
 * The message of a routed event, in pool; keep_event: also a copy of the
 * event (templates read any of its fields).  NGX_OK or NGX_ERROR (memory).
 */
ngx_int_t ngx_acs_message(ngx_pool_t *pool, ngx_acs_event_t *ev,
    ngx_acs_route_t *route, ngx_flag_t preview, ngx_uint_t keep_event,
    ngx_acs_msg_t *msg);

/*
 * The rule of an event type: "Microsoft.Communication.X" (any case), or
 * "X" alone when short_ok; NULL for a type that is never pushed.
 */
ngx_acs_route_rule_t *ngx_acs_route_rule(ngx_str_t *type,
    ngx_uint_t short_ok);
ngx_acs_intent_e ngx_acs_route_intent(ngx_acs_route_rule_t *rule);

/* the event types the status page counts, "other" the last */
#define NGX_ACS_EVENT_TYPES  26

/* the index of a type ("Microsoft.Communication.X", any prefix), and X */
ngx_uint_t ngx_acs_route_type(ngx_str_t *type);
char *ngx_acs_route_type_name(ngx_uint_t i);

/* the pushed types, for messages, as ngx_acs_platform_names() */
u_char *ngx_acs_route_names(u_char *p, u_char *end, const char *last);


#endif /* _NGX_ACS_ROUTE_H_INCLUDED_ */
