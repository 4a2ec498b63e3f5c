
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The scheme ACS signs its own REST calls with (and the official SDKs'
 * credential policies sign requests with), for the registration API:
 *
 *     x-ms-date: <RFC 1123 date>
 *     x-ms-content-sha256: base64(SHA-256(body))
 *     Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;
 *         x-ms-content-sha256&Signature=<base64 HMAC-SHA256>
 *
 * signing METHOD "\n" path-and-query "\n" date ";" host ";" content-hash
 * with the base64-decoded access key.  Plain buffers and a pool, no HTTP:
 * the unit tests and fuzz targets link it alone.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_hmac.h"


ngx_int_t
ngx_acs_hmac_verify(ngx_array_t *keys, ngx_str_t *method,
    ngx_str_t *path_query, ngx_str_t *date, ngx_str_t *host,
    ngx_str_t *content_hash, ngx_str_t *authorization, ngx_pool_t *pool,
    const char **reason)
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

    sts = ngx_pnalloc(pool, len);
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
            return NGX_ERROR;
        }

        match |= (mac_len == 32 && CRYPTO_memcmp(mac, sig, 32) == 0);
    }

    if (!match) {
        *reason = "signature mismatch";
        return NGX_DECLINED;
    }

    return NGX_OK;
}
