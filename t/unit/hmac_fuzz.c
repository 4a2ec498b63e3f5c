
/*
 * The HMAC-SHA256 request signing of the registration API (ngx_acs_hmac.c)
 * on arbitrary bytes, for fuzz_main.c.  The input is split at its first
 * five newlines into method, path and query, date, host, content hash and
 * Authorization header; the header is tried as given, then with the
 * signature made for the other fields, which must verify, and with that
 * signature changed, which must not.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_hmac.h"


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);


#define SCHEME  "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256" \
                "&Signature="


void
ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay)
{
    u_char        *p, *last, *sts, mac[32], auth[sizeof(SCHEME) + 44];
    size_t         len;
    ngx_str_t      f[6], m, b, *key;
    ngx_uint_t     i;
    ngx_pool_t    *pool;
    ngx_array_t   *keys;
    const char    *reason;
    unsigned int   mac_len;

    (void) replay;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return;
    }

    keys = ngx_array_create(pool, 2, sizeof(ngx_str_t));
    if (keys == NULL) {
        goto done;
    }

    key = ngx_array_push(keys);
    if (key == NULL) {
        goto done;
    }

    ngx_str_set(key, "test-access-key-0123456789abcdef");

    p = (u_char *) data;
    last = p + size;

    for (i = 0; i < 6; i++) {
        f[i].data = p;
        p = (i < 5) ? ngx_strlchr(p, last, '\n') : NULL;
        f[i].len = (p ? p : last) - f[i].data;
        p = p ? p + 1 : last;
    }

    (void) ngx_acs_hmac_verify(keys, &f[0], &f[1], &f[2], &f[3], &f[4],
                               &f[5], pool, &reason);

    /* the signature of these fields, made here */

    len = f[0].len + f[1].len + f[2].len + f[3].len + f[4].len + 4;

    sts = ngx_pnalloc(pool, len);
    if (sts == NULL) {
        goto done;
    }

    p = ngx_cpymem(sts, f[0].data, f[0].len);
    *p++ = '\n';
    p = ngx_cpymem(p, f[1].data, f[1].len);
    *p++ = '\n';
    p = ngx_cpymem(p, f[2].data, f[2].len);
    *p++ = ';';
    p = ngx_cpymem(p, f[3].data, f[3].len);
    *p++ = ';';
    p = ngx_cpymem(p, f[4].data, f[4].len);

    if (HMAC(EVP_sha256(), key->data, (int) key->len, sts, p - sts, mac,
             &mac_len)
        == NULL)
    {
        goto done;
    }

    m.data = mac;
    m.len = 32;
    b.data = ngx_cpymem(auth, SCHEME, sizeof(SCHEME) - 1);
    ngx_encode_base64(&b, &m);

    f[5].data = auth;
    f[5].len = b.data + b.len - auth;

    if (ngx_acs_hmac_verify(keys, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
                            pool, &reason)
        != NGX_OK)
    {
        abort();
    }

    /* the first character of the signature: all its bits count */

    p = auth + sizeof(SCHEME) - 1;
    *p = (*p == 'A') ? 'B' : 'A';

    if (ngx_acs_hmac_verify(keys, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5],
                            pool, &reason)
        != NGX_DECLINED)
    {
        abort();
    }

done:

    ngx_destroy_pool(pool);
}
