
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Templates: acs_notify_template EVENT_TYPE PLATFORM PAYLOAD replaces the
 * built-in payload, never the headers.  ${data.PATH} is the scalar at PATH
 * in "data" (any case; array elements by index: ${data.participants.0.rawId};
 * numbers and booleans as their JSON text), ${id}, ${type} or
 * ${eventType}, ${subject}, ${topic} or ${source}, ${time} or ${eventTime},
 * ${dataVersion} are the envelope; ${recipientId}, ${cp}, ${collapseId},
 * ${title} and ${body} are what the built-in payload would use (the texts
 * of the event's message, acs_notify_preview applied, not shortened).
 * Names are letters, digits, "_", "-" and "."; envelope names match in any
 * case.  Values are JSON-escaped (XML-escaped for wns), so a placeholder
 * belongs inside a JSON string; a missing value is "".  A template is
 * compiled into literal and placeholder parts and checked at configuration
 * time (JSON of the platform's shape with every placeholder as "x";
 * XML-looking for wns); one that renders over the size limit is
 * NGX_DECLINED, not shortened.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_json.h"
#include "ngx_acs_event.h"
#include "ngx_acs_template.h"


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
    ngx_acs_platform_t         *platform;
    ngx_array_t                 parts;       /* of ngx_acs_tpl_part_t */
};


static ngx_int_t ngx_acs_template_value(ngx_acs_msg_t *msg,
    ngx_acs_tpl_part_t *part, ngx_str_t *value);
static char *ngx_acs_template_parse(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload);
static char *ngx_acs_template_placeholder(ngx_conf_t *cf,
    ngx_acs_tpl_part_t *part, ngx_str_t *name);
static char *ngx_acs_template_check(ngx_conf_t *cf, ngx_acs_template_t *tpl,
    ngx_str_t *event_type, ngx_str_t *platform);


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


char *
ngx_acs_template_add(ngx_conf_t *cf, ngx_array_t **templates,
    ngx_str_t *event_type, ngx_str_t *platform, ngx_str_t *payload)
{
    char                  *rv;
    u_char                *last, names[256];
    ngx_uint_t             i;
    ngx_acs_platform_t    *p;
    ngx_acs_template_t    *tpl;
    ngx_acs_route_rule_t  *rule;

    rule = ngx_acs_route_rule(event_type, 1);
    if (rule == NULL) {
        last = ngx_acs_route_names(names, names + sizeof(names), " or ");
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: event type \"%V\" is never "
                           "pushed, use %*s", event_type, last - names,
                           names);
        return NGX_CONF_ERROR;
    }

    p = ngx_acs_platform_find(platform);
    if (p == NULL) {
        last = ngx_acs_platform_names(names, names + sizeof(names), " or ");
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: unknown platform \"%V\", "
                           "use %*s", platform, last - names, names);
        return NGX_CONF_ERROR;
    }

    if (p->voip == NGX_ACS_VOIP_ONLY
        && ngx_acs_route_intent(rule) != NGX_ACS_INTENT_INCOMING_CALL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template: %V devices get only "
                           "IncomingCall pushes, a template for \"%V\" "
                           "would never be used", &p->name, event_type);
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
        if (tpl[i].rule == rule && tpl[i].platform == p) {
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
    tpl->platform = p;

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


ngx_acs_template_t *
ngx_acs_template_find(ngx_array_t *templates, ngx_acs_route_rule_t *rule,
    ngx_acs_platform_t *p)
{
    ngx_uint_t           i;
    ngx_acs_template_t  *tpl;

    if (templates == NULL || templates == NGX_CONF_UNSET_PTR) {
        return NULL;
    }

    tpl = templates->elts;

    for (i = 0; i < templates->nelts; i++) {
        if (tpl[i].rule == rule && (p == NULL || tpl[i].platform == p)) {
            return &tpl[i];
        }
    }

    return NULL;
}


ngx_int_t
ngx_acs_template_render(ngx_pool_t *pool, ngx_acs_template_t *tpl,
    ngx_acs_msg_t *msg, ngx_str_t *out)
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

        if (ngx_acs_template_value(msg, &part[i], &v) != NGX_OK) {
            return NGX_ERROR;
        }

        len += (tpl->platform->markup == NGX_ACS_MARKUP_XML)
               ? ngx_acs_xml_escape_len(&v) : ngx_acs_json_escape_len(&v);
    }

    if (len > tpl->platform->limit) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    for (i = 0; i < tpl->parts.nelts; i++) {

        if (part[i].type == NGX_ACS_TPL_LITERAL) {
            p = ngx_cpymem(p, part[i].text.data, part[i].text.len);
            continue;
        }

        if (ngx_acs_template_value(msg, &part[i], &v) != NGX_OK) {
            return NGX_ERROR;
        }

        p = (tpl->platform->markup == NGX_ACS_MARKUP_XML)
            ? ngx_acs_xml_escape(p, &v) : ngx_acs_json_escape(p, &v);
    }

    out->len = p - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_acs_template_value(ngx_acs_msg_t *msg, ngx_acs_tpl_part_t *part,
    ngx_str_t *value)
{
    switch (part->type) {

    case NGX_ACS_TPL_DATA:
        ngx_acs_event_text(msg->event, &part->text, value);
        break;

    case NGX_ACS_TPL_ID:
        *value = msg->id;
        break;

    case NGX_ACS_TPL_TYPE:
        *value = msg->type;
        break;

    case NGX_ACS_TPL_SUBJECT:
        *value = msg->subject;
        break;

    case NGX_ACS_TPL_TOPIC:
        *value = msg->event->topic;
        break;

    case NGX_ACS_TPL_TIME:
        *value = msg->event->time;
        break;

    case NGX_ACS_TPL_DATA_VERSION:
        *value = msg->event->data_version;
        break;

    case NGX_ACS_TPL_RECIPIENT:
        *value = msg->recipient;
        break;

    case NGX_ACS_TPL_CP:
        *value = msg->cp;
        break;

    case NGX_ACS_TPL_COLLAPSE:
        *value = msg->collapse;
        break;

    case NGX_ACS_TPL_TITLE:
        *value = msg->title;
        break;

    case NGX_ACS_TPL_BODY:
        *value = msg->text;
        break;

    case NGX_ACS_TPL_LITERAL:
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
    char                *why;
    size_t               len, limit;
    u_char              *p, *text;
    ngx_str_t            s;
    ngx_uint_t           i;
    ngx_acs_tpl_part_t  *part;

    part = tpl->parts.elts;
    len = 0;

    for (i = 0; i < tpl->parts.nelts; i++) {
        len += (part[i].type == NGX_ACS_TPL_LITERAL) ? part[i].text.len : 1;
    }

    limit = tpl->platform->limit;

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

    text = ngx_pnalloc(cf->temp_pool, len);
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

    s.data = text;
    s.len = len;

    why = tpl->platform->shape(cf->temp_pool, &s);

    if (why) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_template %V %V: %s",
                           event_type, platform, why);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
