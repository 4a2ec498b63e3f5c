
/*
 * Copyright (C) ngx_acs_notify_module authors
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#else
#include <openssl/rsa.h>
#endif

#include "ngx_acs_notify.h"
#include "ngx_acs_json.h"
#include "ngx_acs_auth.h"


#define NGX_ACS_JWKS_MAX          (1024 * 1024)
#define NGX_ACS_JWKS_RECHECK      10           /* seconds */
#define NGX_ACS_RSA_MIN_BITS      2048
#define NGX_ACS_TOKEN_CACHE_SIZE  256
#define NGX_ACS_TIME_MAX          1000000000000000LL  /* 31 million years */


typedef struct {
    ngx_str_t                   kid;
    EVP_PKEY                   *pkey;
} ngx_acs_jwk_t;


typedef struct {
    ngx_pool_t                 *pool;
    ngx_array_t                 keys;       /* of ngx_acs_jwk_t */
    time_t                      mtime;
} ngx_acs_jwks_t;


struct ngx_acs_entra_s {
    ngx_str_t                   jwks_path;
    ngx_acs_jwks_t             *jwks;
    time_t                      jwks_checked;

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
 */

typedef struct {
    u_char                      hash[32];
    ngx_acs_entra_t            *entra;
    time_t                      expires;
} ngx_acs_token_cache_t;


static ngx_int_t ngx_acs_jwks_load(ngx_str_t *path, ngx_log_t *log,
    ngx_acs_jwks_t **jwks, char **err);
static EVP_PKEY *ngx_acs_jwk_rsa(ngx_pool_t *pool, ngx_str_t *n,
    ngx_str_t *e);
static void ngx_acs_jwks_free(void *data);
static void ngx_acs_entra_cleanup(void *data);
static void ngx_acs_jwks_destroy(ngx_acs_jwks_t *ks);
static ngx_acs_jwk_t *ngx_acs_entra_key(ngx_acs_entra_t *entra,
    ngx_str_t *kid, time_t now, ngx_log_t *log);
static ngx_int_t ngx_acs_entra_claims(ngx_acs_entra_t *entra, yajl_val c,
    time_t now, time_t *exp, const char **reason);
static ngx_int_t ngx_acs_json_time(yajl_val v, time_t *t);


static ngx_acs_token_cache_t  ngx_acs_token_cache[NGX_ACS_TOKEN_CACHE_SIZE];


/*
 * With OpenSSL 3, EVP_sha256() makes every digest look the algorithm up
 * again (a property query under a lock); a digest per delivery and two
 * per push make that worth fetching once, in each worker (the master
 * keeps the implicit lookup: it digests only while reading the
 * configuration).
 */

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
static EVP_MD  *ngx_acs_sha256_md;
#endif


void
ngx_acs_sha256_init_process(void)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    if (ngx_acs_sha256_md == NULL) {
        ngx_acs_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }
#endif
}


void
ngx_acs_sha256_exit_process(void)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    EVP_MD_free(ngx_acs_sha256_md);
    ngx_acs_sha256_md = NULL;
#endif
}


const EVP_MD *
ngx_acs_sha256(void)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    if (ngx_acs_sha256_md) {
        return ngx_acs_sha256_md;
    }
#endif

    return EVP_sha256();
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
    char             *err;
    u_char           *p, *last;
    ngx_str_t         v, tenant, *aud;
    ngx_int_t         leeway;
    ngx_uint_t        i;
    ngx_acs_entra_t     *e;
    ngx_pool_cleanup_t  *cln;

    e = ngx_pcalloc(cf->pool, sizeof(ngx_acs_entra_t));
    if (e == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_array_init(&e->audiences, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    ngx_str_null(&tenant);
    ngx_str_set(&e->app_id, NGX_ACS_EVENTGRID_APP_ID);
    e->leeway = 60;

    for (i = 0; i < nargs; i++) {

        if (ngx_acs_conf_param(&args[i], "jwks=", &e->jwks_path)) {

            if (ngx_conf_full_name(cf->cycle, &e->jwks_path, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            continue;
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

    if (e->jwks_path.len == 0 || e->audiences.nelts == 0 || tenant.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra needs jwks=PATH, audience=AUD "
                           "and tenant=TENANT");
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

    if (ngx_acs_jwks_load(&e->jwks_path, cf->log, &e->jwks, &err) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_entra: jwks \"%V\": %s",
                           &e->jwks_path, err);
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_destroy_pool(e->jwks->pool);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_acs_entra_cleanup;
    cln->data = e;

    *entra = e;

    return NGX_CONF_OK;
}


/*
 * Loads a JWKS file into a pool of its own, so that a reload of the file in
 * a worker can drop the old keys whole.  Only RSA signing keys of at least
 * 2048 bits are kept; others are skipped.
 */

static ngx_int_t
ngx_acs_jwks_load(ngx_str_t *path, ngx_log_t *log, ngx_acs_jwks_t **jwks,
    char **err)
{
    ssize_t              n;
    size_t               i;
    yajl_val             tree, keys, k;
    ngx_str_t            text, kty, kid, use, nn, ee;
    ngx_file_t           file;
    ngx_pool_t          *pool;
    ngx_acs_jwk_t       *jwk;
    ngx_file_info_t      fi;
    ngx_acs_jwks_t      *ks;
    ngx_pool_cleanup_t  *cln;

    *err = "out of memory";

    pool = ngx_create_pool(4096, log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    ks = ngx_pcalloc(pool, sizeof(ngx_acs_jwks_t));
    if (ks == NULL
        || ngx_array_init(&ks->keys, pool, 4, sizeof(ngx_acs_jwk_t)) != NGX_OK)
    {
        goto failed;
    }

    ks->pool = pool;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_acs_jwks_free;
    cln->data = ks;

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *path;
    file.log = log;

    file.fd = ngx_open_file(path->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        *err = "cannot be opened";
        goto failed;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > NGX_ACS_JWKS_MAX)
    {
        ngx_close_file(file.fd);
        *err = "cannot be read or is over 1m";
        goto failed;
    }

    ks->mtime = ngx_file_mtime(&fi);

    text.len = ngx_file_size(&fi);
    text.data = ngx_pnalloc(pool, text.len + 1);
    if (text.data == NULL) {
        ngx_close_file(file.fd);
        goto failed;
    }

    n = ngx_read_file(&file, text.data, text.len, 0);
    ngx_close_file(file.fd);

    if (n != (ssize_t) text.len) {
        *err = "cannot be read";
        goto failed;
    }

    tree = ngx_acs_json_tree(pool, &text);
    keys = ngx_acs_json_tree_get(tree, "keys");

    if (keys == NULL || !YAJL_IS_ARRAY(keys)) {
        *err = "is not a JSON Web Key Set (no \"keys\" array)";
        goto failed;
    }

    for (i = 0; i < keys->u.array.len; i++) {
        k = keys->u.array.values[i];

        if (ngx_acs_json_tree_string(k, "kty", &kty) != NGX_OK
            || ngx_acs_json_tree_string(k, "kid", &kid) != NGX_OK)
        {
            continue;
        }

        if (kty.len != 3 || ngx_strncmp(kty.data, "RSA", 3) != 0) {
            continue;
        }

        if (ngx_acs_json_tree_string(k, "use", &use) == NGX_OK
            && (use.len != 3 || ngx_strncmp(use.data, "sig", 3) != 0))
        {
            continue;
        }

        if (ngx_acs_json_tree_string(k, "n", &nn) != NGX_OK
            || ngx_acs_json_tree_string(k, "e", &ee) != NGX_OK)
        {
            continue;
        }

        jwk = ngx_array_push(&ks->keys);
        if (jwk == NULL) {
            goto failed;
        }

        jwk->pkey = ngx_acs_jwk_rsa(pool, &nn, &ee);

        if (jwk->pkey == NULL) {
            ks->keys.nelts--;
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "acs_notify: jwks \"%V\": key \"%V\" skipped: "
                          "not a valid RSA key of %d bits or more",
                          path, &kid, NGX_ACS_RSA_MIN_BITS);
            continue;
        }

        jwk->kid.data = ngx_pstrdup(pool, &kid);
        jwk->kid.len = kid.len;

        if (jwk->kid.data == NULL) {
            goto failed;
        }
    }

    if (ks->keys.nelts == 0) {
        *err = "has no usable RSA signing key";
        goto failed;
    }

    *jwks = ks;

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);

    return NGX_ERROR;
}


static EVP_PKEY *
ngx_acs_jwk_rsa(ngx_pool_t *pool, ngx_str_t *n, ngx_str_t *e)
{
    BIGNUM        *bn, *be;
    EVP_PKEY      *pkey;
    ngx_str_t      dn, de;
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    OSSL_PARAM    *params;
    EVP_PKEY_CTX  *ctx;
    OSSL_PARAM_BLD *bld;
#else
    RSA           *rsa;
#endif

    if (ngx_acs_base64url_decode(pool, n, &dn) != NGX_OK
        || ngx_acs_base64url_decode(pool, e, &de) != NGX_OK
        || dn.len == 0 || de.len == 0)
    {
        return NULL;
    }

    bn = BN_bin2bn(dn.data, dn.len, NULL);
    be = BN_bin2bn(de.data, de.len, NULL);
    pkey = NULL;

    if (bn == NULL || be == NULL
        || BN_num_bits(bn) < NGX_ACS_RSA_MIN_BITS)
    {
        goto done;
    }

#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)

    bld = OSSL_PARAM_BLD_new();
    params = NULL;
    ctx = NULL;

    if (bld != NULL
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1
        && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1
        && (params = OSSL_PARAM_BLD_to_param(bld)) != NULL
        && (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) != NULL
        && EVP_PKEY_fromdata_init(ctx) == 1)
    {
        if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            pkey = NULL;
        }
    }

    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);

#else

    rsa = RSA_new();
    if (rsa == NULL) {
        goto done;
    }

    if (RSA_set0_key(rsa, bn, be, NULL) != 1) {
        RSA_free(rsa);
        goto done;
    }

    bn = NULL;
    be = NULL;

    pkey = EVP_PKEY_new();
    if (pkey == NULL || EVP_PKEY_assign_RSA(pkey, rsa) != 1) {
        EVP_PKEY_free(pkey);
        RSA_free(rsa);
        pkey = NULL;
    }

#endif

done:

    if (pkey == NULL) {
        ERR_clear_error();
    }

    BN_free(bn);
    BN_free(be);

    return pkey;
}


static void
ngx_acs_jwks_free(void *data)
{
    ngx_acs_jwks_t  *ks = data;

    ngx_uint_t      i;
    ngx_acs_jwk_t  *k;

    k = ks->keys.elts;

    for (i = 0; i < ks->keys.nelts; i++) {
        EVP_PKEY_free(k[i].pkey);
    }
}


static void
ngx_acs_entra_cleanup(void *data)
{
    ngx_acs_entra_t  *e = data;

    ngx_acs_jwks_destroy(e->jwks);
}


/*
 * A key set's pool may have been made with a log that is gone by now (a
 * configuration's or a request's): it is destroyed with the current one.
 */

static void
ngx_acs_jwks_destroy(ngx_acs_jwks_t *ks)
{
    ks->pool->log = ngx_cycle->log;
    ngx_destroy_pool(ks->pool);
}


/*
 * Finds the key of a kid.  Entra rotates its keys: on an unknown kid the
 * JWKS file is read again if it changed on disk, at most every 10 seconds,
 * so an operator's cron job that refreshes the file is enough.
 */

static ngx_acs_jwk_t *
ngx_acs_entra_key(ngx_acs_entra_t *entra, ngx_str_t *kid, time_t now,
    ngx_log_t *log)
{
    char             *err;
    ngx_uint_t        i, reloaded;
    ngx_acs_jwk_t    *k;
    ngx_acs_jwks_t   *ks;
    ngx_file_info_t   fi;

    for (reloaded = 0; /* void */; reloaded = 1) {

        k = entra->jwks->keys.elts;

        for (i = 0; i < entra->jwks->keys.nelts; i++) {
            if (k[i].kid.len == kid->len
                && ngx_strncmp(k[i].kid.data, kid->data, kid->len) == 0)
            {
                return &k[i];
            }
        }

        if (reloaded || now - entra->jwks_checked < NGX_ACS_JWKS_RECHECK) {
            return NULL;
        }

        entra->jwks_checked = now;

        if (ngx_file_info(entra->jwks_path.data, &fi) == NGX_FILE_ERROR
            || ngx_file_mtime(&fi) == entra->jwks->mtime)
        {
            return NULL;
        }

        /* the pool outlives the request: the cycle's log, not its */

        if (ngx_acs_jwks_load(&entra->jwks_path, ngx_cycle->log, &ks, &err)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, log, 0,
                          "acs_notify: jwks \"%V\" not reloaded: %s",
                          &entra->jwks_path, err);
            return NULL;
        }

        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "acs_notify: jwks \"%V\" reloaded, %ui keys",
                      &entra->jwks_path, ks->keys.nelts);

        ngx_acs_jwks_destroy(entra->jwks);
        entra->jwks = ks;
    }
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

    if (EVP_Digest(token->data, token->len, hash, &hlen, ngx_acs_sha256(), NULL)
        != 1)
    {
        return NGX_ERROR;
    }

    c = &ngx_acs_token_cache[(hash[0] | (hash[1] << 8))
                             % NGX_ACS_TOKEN_CACHE_SIZE];

    if (c->entra == entra && now < c->expires
        && CRYPTO_memcmp(c->hash, hash, 32) == 0)
    {
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

    key = ngx_acs_entra_key(entra, &kid, now, log);
    if (key == NULL) {
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
    c->entra = entra;
    c->expires = exp + entra->leeway;

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


ngx_int_t
ngx_acs_hmac_verify(ngx_array_t *keys, ngx_str_t *method,
    ngx_str_t *path_query, ngx_str_t *date, ngx_str_t *host,
    ngx_str_t *content_hash, ngx_str_t *authorization, const char **reason)
{
    u_char         *p, *last, *sts;
    u_char          mac[EVP_MAX_MD_SIZE], sig[64];
    size_t          len;
    ngx_str_t       given, decoded, *key;
    ngx_uint_t      i, match;
    unsigned int    mac_len;

    static ngx_str_t  scheme = ngx_string("HMAC-SHA256 SignedHeaders="
                                          "x-ms-date;host;x-ms-content-sha256"
                                          "&Signature=");

    if (authorization->len <= scheme.len
        || ngx_strncmp(authorization->data, scheme.data, scheme.len) != 0)
    {
        *reason = "authorization is not HMAC-SHA256 with the signed "
                  "headers x-ms-date;host;x-ms-content-sha256";
        return NGX_DECLINED;
    }

    given.data = authorization->data + scheme.len;
    given.len = authorization->len - scheme.len;

    decoded.data = sig;

    if (given.len != ngx_base64_encoded_length(32)
        || ngx_decode_base64(&decoded, &given) != NGX_OK
        || decoded.len != 32)
    {
        *reason = "malformed signature";
        return NGX_DECLINED;
    }

    /* METHOD "\n" path-and-query "\n" date ";" host ";" content-hash */

    len = method->len + 1 + path_query->len + 1 + date->len + 1 + host->len
          + 1 + content_hash->len;

    sts = ngx_alloc(len, ngx_cycle->log);
    if (sts == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(sts, method->data, method->len);
    *p++ = '\n';
    p = ngx_cpymem(p, path_query->data, path_query->len);
    *p++ = '\n';
    p = ngx_cpymem(p, date->data, date->len);
    *p++ = ';';
    p = ngx_cpymem(p, host->data, host->len);
    *p++ = ';';
    last = ngx_cpymem(p, content_hash->data, content_hash->len);

    match = 0;
    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        if (HMAC(ngx_acs_sha256(), key[i].data, (int) key[i].len, sts,
                 last - sts, mac, &mac_len)
            == NULL)
        {
            ngx_free(sts);
            return NGX_ERROR;
        }

        match |= (mac_len == 32 && CRYPTO_memcmp(mac, sig, 32) == 0);
    }

    ngx_free(sts);

    if (!match) {
        *reason = "signature mismatch";
        return NGX_DECLINED;
    }

    return NGX_OK;
}
