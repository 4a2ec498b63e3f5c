
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_conf.h"
#include "ngx_acs_json.h"
#include "ngx_acs_jwks.h"
#include "ngx_acs_auth.h"


#define NGX_ACS_TOKEN_CACHE_SIZE  256
#define NGX_ACS_TIME_MAX          1000000000000000LL  /* 31 million years */


struct ngx_acs_entra_s {
    ngx_acs_jwks_t             *jwks;

    ngx_array_t                 audiences;  /* of ngx_str_t */
    ngx_str_t                   iss_v1;
    ngx_str_t                   iss_v2;
    ngx_str_t                   app_id;
    ngx_str_t                   role;
    time_t                      leeway;
};


/*
 * Verified tokens, per worker, by SHA-256 of the token: Event Grid replays
 * one token on every delivery for about a day, so RSA runs once per token.
 * A verdict remembers its key: when the worker takes a new key set (the
 * generation changed), a verdict whose key is gone is dropped.
 */

typedef struct {
    u_char                      hash[32];
    ngx_acs_entra_t            *entra;
    time_t                      expires;
    ngx_uint_t                  generation;
    u_char                      key[32];    /* ngx_acs_jwk_t.id */
} ngx_acs_token_cache_t;


static ngx_uint_t ngx_acs_token_cached(ngx_acs_entra_t *entra,
    ngx_acs_token_cache_t *c, u_char *hash, time_t now, ngx_log_t *log);
static ngx_int_t ngx_acs_entra_claims(ngx_acs_entra_t *entra, yajl_val c,
    time_t now, time_t *exp, const char **reason);
static ngx_int_t ngx_acs_json_time(yajl_val v, time_t *t);
static ngx_flag_t ngx_acs_secret_in_query(ngx_str_t *value);


static ngx_acs_token_cache_t  ngx_acs_token_cache[NGX_ACS_TOKEN_CACHE_SIZE];


/*
 * acs_notify_secret VALUE SECRET...: VALUE is what the sender presents (a
 * complex value), each SECRET is kept as its digest only.
 */

char *
ngx_acs_secret_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_http_complex_value_t **value, ngx_array_t **secrets,
    ngx_flag_t *in_query)
{
    ngx_str_t                          secret;
    ngx_uint_t                         i;
    ngx_acs_secret_t                  *s;
    ngx_http_compile_complex_value_t   ccv;

    *value = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (*value == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &args[0];
    ccv.complex_value = *value;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    *in_query = ngx_acs_secret_in_query(&args[0]);

    *secrets = ngx_array_create(cf->pool, nargs - 1,
                                sizeof(ngx_acs_secret_t));
    if (*secrets == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < nargs; i++) {

        if (ngx_acs_conf_value(cf, &args[i], &secret) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        if (secret.len < 8) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_secret: secret %ui is shorter "
                               "than 8 characters", i);
            return NGX_CONF_ERROR;
        }

        s = ngx_array_push(*secrets);
        if (s == NULL || ngx_acs_secret_digest(&secret, s) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        /* the clear text is not needed any more */
        ngx_explicit_memzero(secret.data, secret.len);
    }

    return NGX_CONF_OK;
}


/*
 * Whether an acs_notify_secret value is taken from the URL's query string
 * alone ("$arg_code", "${arg_code}", "$args"): Event Grid sends that one
 * with its CloudEvents handshake too, since it calls the URL it was given.
 */

static ngx_flag_t
ngx_acs_secret_in_query(ngx_str_t *value)
{
    u_char      *p, *last, *name;
    size_t       len;
    ngx_uint_t   vars;

    vars = 0;
    last = value->data + value->len;

    for (p = value->data; p < last; p++) {

        if (*p != '$') {
            continue;
        }

        if (p + 1 < last && p[1] == '{') {
            name = p + 2;
            p = ngx_strlchr(name, last, '}');
            if (p == NULL) {
                return 0;
            }

            len = p - name;

        } else {
            name = p + 1;

            for (p = name; p < last; p++) {
                if (!(isalnum(*p) || *p == '_')) {
                    break;
                }
            }

            len = p - name;

            /* the loop goes on after the name */
            p--;
        }

        if (!((len > 4 && ngx_strncmp(name, "arg_", 4) == 0)
              || (len == 4 && ngx_strncmp(name, "args", 4) == 0)
              || (len == 12 && ngx_strncmp(name, "query_string", 12) == 0)))
        {
            return 0;
        }

        vars++;
    }

    return vars > 0;
}


ngx_int_t
ngx_acs_secret_digest(ngx_str_t *value, ngx_acs_secret_t *s)
{
    unsigned int  len;

    if (EVP_Digest(value->data, value->len, s->digest, &len,
                   ngx_acs_sha256(), NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Digests of equal length are compared with CRYPTO_memcmp(), and every
 * configured secret is compared: the time taken says nothing of the value.
 */

ngx_int_t
ngx_acs_secret_match(ngx_array_t *secrets, ngx_str_t *value)
{
    ngx_uint_t         i, match;
    ngx_acs_secret_t   given, *s;

    if (ngx_acs_secret_digest(value, &given) != NGX_OK) {
        return NGX_ERROR;
    }

    match = 0;
    s = secrets->elts;

    for (i = 0; i < secrets->nelts; i++) {
        match |= (CRYPTO_memcmp(given.digest, s[i].digest, 32) == 0);
    }

    return match ? NGX_OK : NGX_DECLINED;
}


char *
ngx_acs_entra_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_entra_t **entra)
{
    u_char           *p, *last;
    ngx_str_t         v, tenant, *aud;
    ngx_int_t         leeway, rc;
    ngx_uint_t        i;
    ngx_acs_entra_t  *e;

    e = ngx_pcalloc(cf->pool, sizeof(ngx_acs_entra_t));
    if (e == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&e->audiences, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    e->jwks = ngx_acs_jwks_create(cf);
    if (e->jwks == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&tenant);
    ngx_str_set(&e->app_id, NGX_ACS_EVENTGRID_APP_ID);
    e->leeway = 60;

    for (i = 0; i < nargs; i++) {

        rc = ngx_acs_jwks_param(cf, e->jwks, &args[i]);

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return NGX_CONF_ERROR;
        }

        if (ngx_acs_conf_param(&args[i], "audience=", &v)) {
            p = v.data;
            last = v.data + v.len;

            while (p < last) {
                v.data = p;
                p = ngx_strlchr(p, last, ',');
                if (p == NULL) {
                    p = last;
                }
                v.len = p - v.data;
                p++;

                if (v.len == 0) {
                    continue;
                }

                aud = ngx_array_push(&e->audiences);
                if (aud == NULL) {
                    return NGX_CONF_ERROR;
                }

                *aud = v;
            }

            continue;
        }

        if (ngx_acs_conf_param(&args[i], "tenant=", &tenant)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "app_id=", &e->app_id)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "role=", &e->role)) {
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "leeway=", &v)) {

            leeway = ngx_parse_time(&v, 1);
            if (leeway == NGX_ERROR || leeway > 3600) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_entra: invalid leeway \"%V\", "
                                   "expected a time up to 1h", &v);
                return NGX_CONF_ERROR;
            }

            e->leeway = leeway;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra: invalid parameter \"%V\"",
                           &args[i]);
        return NGX_CONF_ERROR;
    }

    rc = ngx_acs_jwks_init_conf(cf, e->jwks);

    if (rc == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if (rc == NGX_DECLINED || e->audiences.nelts == 0 || tenant.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra needs jwks=PATH|URL, "
                           "audience=AUD and tenant=TENANT");
        return NGX_CONF_ERROR;
    }

    for (p = tenant.data; p < tenant.data + tenant.len; p++) {
        if (!(isalnum(*p) || *p == '-' || *p == '.')) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "acs_notify_entra: invalid tenant \"%V\", "
                               "expected the directory (tenant) id",
                               &tenant);
            return NGX_CONF_ERROR;
        }
    }

    if (e->app_id.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra: empty app_id");
        return NGX_CONF_ERROR;
    }

    /* the two issuers Entra uses for a tenant: v1.0 and v2.0 tokens */

    e->iss_v1.data = ngx_pnalloc(cf->pool, sizeof("https://sts.windows.net//")
                                           - 1 + tenant.len);
    e->iss_v2.data = ngx_pnalloc(cf->pool,
                         sizeof("https://login.microsoftonline.com//v2.0") - 1
                         + tenant.len);
    if (e->iss_v1.data == NULL || e->iss_v2.data == NULL) {
        return NGX_CONF_ERROR;
    }

    e->iss_v1.len = ngx_sprintf(e->iss_v1.data, "https://sts.windows.net/%V/",
                                &tenant)
                    - e->iss_v1.data;
    e->iss_v2.len = ngx_sprintf(e->iss_v2.data,
                                "https://login.microsoftonline.com/%V/v2.0",
                                &tenant)
                    - e->iss_v2.data;

    *entra = e;

    return NGX_CONF_OK;
}


ngx_uint_t
ngx_acs_entra_remote(ngx_acs_entra_t *entra)
{
    return ngx_acs_jwks_remote(entra->jwks);
}


ngx_int_t
ngx_acs_entra_init_process(ngx_acs_entra_t *entra, ngx_cycle_t *cycle)
{
    return ngx_acs_jwks_init_process(entra->jwks, cycle);
}


/*
 * 1 when the cache slot holds a verdict of this configuration for the
 * token's hash, not expired, and whose key is in the current key set
 */

static ngx_uint_t
ngx_acs_token_cached(ngx_acs_entra_t *entra, ngx_acs_token_cache_t *c,
    u_char *hash, time_t now, ngx_log_t *log)
{
    ngx_uint_t  generation;

    if (c->entra != entra || now >= c->expires
        || CRYPTO_memcmp(c->hash, hash, 32) != 0)
    {
        return 0;
    }

    generation = ngx_acs_jwks_generation(entra->jwks);

    if (c->generation != generation) {

        if (!ngx_acs_jwks_has(entra->jwks, c->key)) {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                           "acs_notify: cached token dropped, its key left "
                           "the key set");
            c->entra = NULL;
            return 0;
        }

        c->generation = generation;
    }

    return 1;
}


ngx_int_t
ngx_acs_entra_verify(ngx_acs_entra_t *entra, ngx_str_t *token, time_t now,
    ngx_pool_t *pool, ngx_log_t *log, const char **reason)
{
    int                     rc;
    u_char                 *dot1, *dot2, *last;
    u_char                  hash[32];
    time_t                  exp;
    yajl_val                header, claims;
    ngx_str_t               seg, json, alg, kid, sig;
    unsigned int            hlen;
    EVP_MD_CTX             *md;
    ngx_acs_jwk_t          *key;
    ngx_acs_token_cache_t  *c;

    if (token->len > NGX_ACS_TOKEN_MAX) {
        *reason = "token too large";
        return NGX_DECLINED;
    }

    last = token->data + token->len;

    dot1 = ngx_strlchr(token->data, last, '.');
    dot2 = dot1 ? ngx_strlchr(dot1 + 1, last, '.') : NULL;

    if (dot2 == NULL || ngx_strlchr(dot2 + 1, last, '.') != NULL) {
        *reason = "token is not three segments";
        return NGX_DECLINED;
    }

    if (EVP_Digest(token->data, token->len, hash, &hlen, ngx_acs_sha256(),
                   NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    c = &ngx_acs_token_cache[(hash[0] | (hash[1] << 8))
                             % NGX_ACS_TOKEN_CACHE_SIZE];

    if (ngx_acs_token_cached(entra, c, hash, now, log)) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify: token found in cache");
        return NGX_OK;
    }

    /* header */

    seg.data = token->data;
    seg.len = dot1 - token->data;

    if (ngx_acs_base64url_decode(pool, &seg, &json) != NGX_OK) {
        *reason = "bad base64url in token header";
        return NGX_DECLINED;
    }

    header = ngx_acs_json_tree(pool, &json);

    if (header == NULL || !YAJL_IS_OBJECT(header)) {
        *reason = "token header is not a JSON object";
        return NGX_DECLINED;
    }

    if (ngx_acs_json_tree_string(header, "alg", &alg) != NGX_OK
        || alg.len != 5 || ngx_strncmp(alg.data, "RS256", 5) != 0)
    {
        *reason = "token alg is not RS256";
        return NGX_DECLINED;
    }

    if (ngx_acs_json_tree_string(header, "kid", &kid) != NGX_OK) {
        *reason = "token has no kid";
        return NGX_DECLINED;
    }

    switch (ngx_acs_jwks_key(entra->jwks, &kid, now, log, &key)) {

    case NGX_OK:
        break;

    case NGX_AGAIN:
        *reason = "no signing keys yet";
        return NGX_AGAIN;

    default:
        *reason = "unknown token kid";
        return NGX_DECLINED;
    }

    /* signature over "header.payload" */

    seg.data = dot2 + 1;
    seg.len = last - seg.data;

    if (ngx_acs_base64url_decode(pool, &seg, &sig) != NGX_OK) {
        *reason = "bad base64url in token signature";
        return NGX_DECLINED;
    }

    if (sig.len != (size_t) EVP_PKEY_size(key->pkey)) {
        *reason = "bad token signature";
        return NGX_DECLINED;
    }

    md = EVP_MD_CTX_new();
    if (md == NULL) {
        return NGX_ERROR;
    }

    rc = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key->pkey);
    if (rc == 1) {
        rc = EVP_DigestVerify(md, sig.data, sig.len, token->data,
                              dot2 - token->data);
    }

    EVP_MD_CTX_free(md);

    if (rc != 1) {
        /* leave no error in the queue for nginx's TLS code to report */
        ERR_clear_error();
        *reason = "bad token signature";
        return NGX_DECLINED;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify: token signature verified");

    /* claims */

    seg.data = dot1 + 1;
    seg.len = dot2 - seg.data;

    if (ngx_acs_base64url_decode(pool, &seg, &json) != NGX_OK) {
        *reason = "bad base64url in token payload";
        return NGX_DECLINED;
    }

    claims = ngx_acs_json_tree(pool, &json);

    if (claims == NULL || !YAJL_IS_OBJECT(claims)) {
        *reason = "token payload is not a JSON object";
        return NGX_DECLINED;
    }

    if (ngx_acs_entra_claims(entra, claims, now, &exp, reason) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_memcpy(c->hash, hash, 32);
    ngx_memcpy(c->key, key->id, 32);
    c->entra = entra;
    c->expires = exp + entra->leeway;
    c->generation = ngx_acs_jwks_generation(entra->jwks);

    return NGX_OK;
}


static ngx_int_t
ngx_acs_entra_claims(ngx_acs_entra_t *entra, yajl_val c, time_t now,
    time_t *exp, const char **reason)
{
    size_t      i;
    time_t      t;
    yajl_val    v;
    ngx_str_t   s, *aud;
    ngx_uint_t  j, v2, found;

    v = ngx_acs_json_tree_get(c, "exp");
    if (v == NULL) {
        *reason = "token has no exp";
        return NGX_DECLINED;
    }

    /* bounded: exp + leeway cannot overflow */

    if (ngx_acs_json_time(v, exp) != NGX_OK) {
        *reason = "token exp is not a time";
        return NGX_DECLINED;
    }

    if (now >= *exp + entra->leeway) {
        *reason = "token expired";
        return NGX_DECLINED;
    }

    v = ngx_acs_json_tree_get(c, "nbf");
    if (v != NULL) {
        if (ngx_acs_json_time(v, &t) != NGX_OK) {
            *reason = "token nbf is not a time";
            return NGX_DECLINED;
        }

        if (now + entra->leeway < t) {
            *reason = "token not yet valid";
            return NGX_DECLINED;
        }
    }

    /* issuer: the tenant's v1.0 or v2.0 endpoint, exactly */

    if (ngx_acs_json_tree_string(c, "iss", &s) != NGX_OK) {
        *reason = "token has no iss";
        return NGX_DECLINED;
    }

    if (s.len == entra->iss_v1.len
        && ngx_strncmp(s.data, entra->iss_v1.data, s.len) == 0)
    {
        v2 = 0;

    } else if (s.len == entra->iss_v2.len
               && ngx_strncmp(s.data, entra->iss_v2.data, s.len) == 0)
    {
        v2 = 1;

    } else {
        *reason = "token issuer is not the configured tenant";
        return NGX_DECLINED;
    }

    /* audience: a string or an array of strings */

    v = ngx_acs_json_tree_get(c, "aud");
    aud = entra->audiences.elts;
    found = 0;

    for (i = 0; v != NULL && !found; i++) {

        if (YAJL_IS_STRING(v)) {
            s.data = (u_char *) v->u.string;

        } else if (YAJL_IS_ARRAY(v) && i < v->u.array.len
                   && YAJL_IS_STRING(v->u.array.values[i]))
        {
            s.data = (u_char *) v->u.array.values[i]->u.string;

        } else {
            break;
        }

        s.len = ngx_strlen(s.data);

        for (j = 0; j < entra->audiences.nelts; j++) {
            if (aud[j].len == s.len
                && ngx_strncmp(aud[j].data, s.data, s.len) == 0)
            {
                found = 1;
                break;
            }
        }

        if (YAJL_IS_STRING(v)) {
            break;
        }
    }

    if (!found) {
        *reason = "token audience not allowed";
        return NGX_DECLINED;
    }

    /* the calling application: Event Grid's, "appid" in v1, "azp" in v2 */

    if (ngx_acs_json_tree_string(c, v2 ? "azp" : "appid", &s) != NGX_OK
        || s.len != entra->app_id.len
        || ngx_strncasecmp(s.data, entra->app_id.data, s.len) != 0)
    {
        *reason = v2 ? "token azp is not the configured app_id"
                     : "token appid is not the configured app_id";
        return NGX_DECLINED;
    }

    if (entra->role.len == 0) {
        return NGX_OK;
    }

    v = ngx_acs_json_tree_get(c, "roles");

    if (v != NULL && YAJL_IS_ARRAY(v)) {
        for (i = 0; i < v->u.array.len; i++) {
            if (YAJL_IS_STRING(v->u.array.values[i])
                && ngx_strlen(v->u.array.values[i]->u.string)
                   == entra->role.len
                && ngx_strncmp(v->u.array.values[i]->u.string,
                               entra->role.data, entra->role.len) == 0)
            {
                return NGX_OK;
            }
        }
    }

    *reason = "token lacks the required role";
    return NGX_DECLINED;
}


/* NumericDate: seconds since the epoch, from 0 to NGX_ACS_TIME_MAX */

static ngx_int_t
ngx_acs_json_time(yajl_val v, time_t *t)
{
    if (YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) >= 0
        && YAJL_GET_INTEGER(v) <= NGX_ACS_TIME_MAX)
    {
        *t = (time_t) YAJL_GET_INTEGER(v);
        return NGX_OK;
    }

    if (YAJL_IS_DOUBLE(v) && YAJL_GET_DOUBLE(v) >= 0
        && YAJL_GET_DOUBLE(v) <= (double) NGX_ACS_TIME_MAX)
    {
        *t = (time_t) YAJL_GET_DOUBLE(v);
        return NGX_OK;
    }

    return NGX_DECLINED;
}
