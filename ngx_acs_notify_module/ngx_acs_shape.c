
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The shape of each platform's payloads, as a template must have it
 * (acs_notify_template, ngx_acs_template.c): checked on the template with
 * every placeholder replaced by "x".  Each returns NULL when the payload
 * has the shape, else why not, for the [emerg] line.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_tree.h>

#include "ngx_acs_json.h"
#include "ngx_acs_shape.h"


#define NGX_ACS_TPL_NOT_JSON                                                  \
    "the payload is not valid JSON with every placeholder replaced by "      \
    "\"x\" (a placeholder belongs inside a JSON string): "


static char *ngx_acs_shape_object(ngx_pool_t *pool, ngx_str_t *payload,
    yajl_val *root);


/* a toast: XML-looking */

char *
ngx_acs_shape_toast(ngx_pool_t *pool, ngx_str_t *payload)
{
    u_char  *p, *last;

    p = payload->data;
    last = p + payload->len;

    while (p < last && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    {
        p++;
    }

    if (last - p < 6 || ngx_strncmp(p, "<toast", 6) != 0) {
        return "the payload must be toast XML, starting with \"<toast\"";
    }

    return NULL;
}


/* any JSON object */

char *
ngx_acs_shape_json(ngx_pool_t *pool, ngx_str_t *payload)
{
    yajl_val   root;
    char      *why;

    why = ngx_acs_shape_object(pool, payload, &root);

    if (why == NULL) {
        yajl_tree_free(root);
    }

    return why;
}


char *
ngx_acs_shape_apns(ngx_pool_t *pool, ngx_str_t *payload)
{
    char      *why;
    yajl_val   root, v;

    why = ngx_acs_shape_object(pool, payload, &root);
    if (why) {
        return why;
    }

    v = ngx_acs_json_tree_get(root, "aps");

    if (v == NULL || !YAJL_IS_OBJECT(v)) {
        why = "an APNs payload needs an \"aps\" object (\"aps\":{} for "
              "VoIP)";
    }

    yajl_tree_free(root);

    return why;
}


char *
ngx_acs_shape_fcmv1(ngx_pool_t *pool, ngx_str_t *payload)
{
    char      *why;
    u_char    *p;
    size_t     i, len;
    yajl_val   root, v;

    why = ngx_acs_shape_object(pool, payload, &root);
    if (why) {
        return why;
    }

    v = ngx_acs_json_tree_get(root, "message");

    if (v == NULL || !YAJL_IS_OBJECT(v)) {
        why = "an FCM v1 payload is {\"message\":{...}}";
        goto done;
    }

    if (ngx_acs_json_tree_get(v, "token")
        || ngx_acs_json_tree_get(v, "topic")
        || ngx_acs_json_tree_get(v, "condition"))
    {
        why = "remove \"message.token\", \"topic\" and \"condition\", "
              "Notification Hubs sets the target";
        goto done;
    }

    v = ngx_acs_json_tree_get(v, "data");

    if (v && !YAJL_IS_OBJECT(v)) {
        why = "\"message.data\" must be an object of strings";
        goto done;
    }

    for (i = 0; v && i < v->u.object.len; i++) {
        if (!YAJL_IS_STRING(v->u.object.values[i])) {
            len = sizeof("\"message.data.\" must be a string")
                  + ngx_strlen(v->u.object.keys[i]);

            p = ngx_pnalloc(pool, len);
            if (p == NULL) {
                why = "out of memory";
                goto done;
            }

            ngx_sprintf(p, "\"message.data.%s\" must be a string%Z",
                        v->u.object.keys[i]);
            why = (char *) p;
            goto done;
        }
    }

done:

    yajl_tree_free(root);

    return why;
}


/*
 * The payload as a JSON object, in *root (for yajl_tree_free()), or why
 * it is not one
 */

static char *
ngx_acs_shape_object(ngx_pool_t *pool, ngx_str_t *payload, yajl_val *root)
{
    char    *why, *text;
    u_char  *p, *q;
    char     err[256];

    /* the text, as yajl's tree parser wants it: a C string */

    text = ngx_pnalloc(pool, payload->len + 1);
    if (text == NULL) {
        return "out of memory";
    }

    ngx_memcpy(text, payload->data, payload->len);
    text[payload->len] = '\0';

    if (ngx_strlen(text) != payload->len) {
        return "the payload contains a NUL byte";
    }

    why = ngx_acs_json_check(payload);
    if (why) {
        p = ngx_pnalloc(pool, sizeof("the payload ") + ngx_strlen(why));
        if (p == NULL) {
            return "out of memory";
        }

        ngx_sprintf(p, "the payload %s%Z", why);
        return (char *) p;
    }

    err[0] = '\0';

    *root = yajl_tree_parse(text, err, sizeof(err));

    if (*root == NULL) {

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

        p = ngx_pnalloc(pool, sizeof(NGX_ACS_TPL_NOT_JSON)
                              + (q - (u_char *) err));
        if (p == NULL) {
            return "out of memory";
        }

        ngx_sprintf(p, NGX_ACS_TPL_NOT_JSON "%s%Z", err);
        return (char *) p;
    }

    if (!YAJL_IS_OBJECT(*root)) {
        yajl_tree_free(*root);
        return "the payload must be a JSON object";
    }

    return NULL;
}
