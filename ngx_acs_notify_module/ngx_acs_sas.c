
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Notification Hubs connection strings and SAS tokens (docs/dispatch.md,
 * section 1), on plain buffers: nothing here but nginx's string functions
 * and OpenSSL, so that t/unit can check them against the test vector.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_acs_sas.h"


static ngx_str_t *ngx_acs_trim(ngx_str_t *s);


/*
 * Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...: parts
 * split on ";" (empty ones skipped, whitespace trimmed), each on its first
 * "=", so the key's base64 padding stays in the value.
 */

ngx_int_t
ngx_acs_connection_string(ngx_str_t *cs, ngx_str_t *endpoint,
    ngx_str_t *key_name, ngx_str_t *key, const char **err)
{
    u_char     *p, *last, *semi, *eq;
    ngx_str_t   part, name, value;

    ngx_str_null(endpoint);
    ngx_str_null(key_name);
    ngx_str_null(key);

    p = cs->data;
    last = cs->data + cs->len;

    while (p < last) {
        semi = ngx_strlchr(p, last, ';');
        if (semi == NULL) {
            semi = last;
        }

        part.data = p;
        part.len = semi - p;
        p = semi + 1;

        if (ngx_acs_trim(&part)->len == 0) {
            continue;
        }

        eq = ngx_strlchr(part.data, part.data + part.len, '=');
        if (eq == NULL) {
            *err = "a part has no \"=\"";
            return NGX_DECLINED;
        }

        name.data = part.data;
        name.len = eq - part.data;
        value.data = eq + 1;
        value.len = part.data + part.len - value.data;

        ngx_acs_trim(&name);
        ngx_acs_trim(&value);

        if (name.len == 8
            && ngx_strncasecmp(name.data, (u_char *) "Endpoint", 8) == 0)
        {
            *endpoint = value;

        } else if (name.len == 19
                   && ngx_strncasecmp(name.data,
                                      (u_char *) "SharedAccessKeyName", 19)
                      == 0)
        {
            *key_name = value;

        } else if (name.len == 15
                   && ngx_strncasecmp(name.data,
                                      (u_char *) "SharedAccessKey", 15) == 0)
        {
            *key = value;
        }
    }

    if (endpoint->len == 0) {
        *err = "no Endpoint";
        return NGX_DECLINED;
    }

    if (endpoint->len < 6
        || ngx_strncasecmp(endpoint->data, (u_char *) "sb://", 5) != 0)
    {
        *err = "Endpoint does not start with sb://";
        return NGX_DECLINED;
    }

    if (key_name->len == 0 || key_name->len > 256) {
        *err = "SharedAccessKeyName missing or over 256 characters";
        return NGX_DECLINED;
    }

    if (key->len == 0 || key->len > 256) {
        *err = "SharedAccessKey missing or over 256 characters";
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_str_t *
ngx_acs_trim(ngx_str_t *s)
{
    while (s->len && (s->data[0] == ' ' || s->data[0] == '\t'
                      || s->data[0] == '\n' || s->data[0] == '\r'))
    {
        s->data++;
        s->len--;
    }

    while (s->len && (s->data[s->len - 1] == ' '
                      || s->data[s->len - 1] == '\t'
                      || s->data[s->len - 1] == '\n'
                      || s->data[s->len - 1] == '\r'))
    {
        s->len--;
    }

    return s;
}


size_t
ngx_acs_sas_len(ngx_str_t *resource, ngx_str_t *key_name)
{
    /*
     * every byte of sr may take 3 encoded, the signature is 44 base64
     * characters; "\n" and se are written after sr while signing
     */

    return sizeof("SharedAccessSignature sr=&sig=&se=&skn=") - 1
           + 3 * ngx_min(resource->len, NGX_ACS_RESOURCE_MAX) + 3 * 44
           + 2 * NGX_TIME_T_LEN + key_name->len;
}


u_char *
ngx_acs_sas(u_char *buf, ngx_str_t *resource, ngx_str_t *key_name,
    ngx_str_t *key, time_t se)
{
    u_char        *p, *sr, *last;
    u_char         lower[NGX_ACS_RESOURCE_MAX], mac[EVP_MAX_MD_SIZE], b64[64];
    size_t         len;
    ngx_str_t      src, dst;
    unsigned int   mac_len;

    /* sr = percent-encode(lowercase(resource)): lowercase first */

    len = ngx_min(resource->len, sizeof(lower));
    ngx_strlow(lower, resource->data, len);

    p = ngx_cpymem(buf, "SharedAccessSignature sr=",
                   sizeof("SharedAccessSignature sr=") - 1);
    sr = p;
    last = (u_char *) ngx_escape_uri(p, lower, len, NGX_ESCAPE_URI_COMPONENT);

    /*
     * The string to sign is sr exactly as sent, "\n", se: written after sr
     * for the HMAC, then overwritten by the rest of the header.  The key
     * is the UTF-8 bytes of the key text, never base64-decoded.
     */

    p = ngx_sprintf(last, "\n%T", se);

    if (HMAC(EVP_sha256(), key->data, (int) key->len, sr, p - sr, mac,
             &mac_len)
        == NULL)
    {
        mac_len = 0;
    }

    src.data = mac;
    src.len = mac_len;
    dst.data = b64;
    ngx_encode_base64(&dst, &src);

    p = ngx_cpymem(last, "&sig=", 5);
    p = (u_char *) ngx_escape_uri(p, dst.data, dst.len,
                                  NGX_ESCAPE_URI_COMPONENT);

    return ngx_sprintf(p, "&se=%T&skn=%V", se, key_name);
}
