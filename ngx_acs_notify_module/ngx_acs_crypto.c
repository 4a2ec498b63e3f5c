
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * SHA-256 for every file that digests: tokens, secrets, signatures,
 * de-duplication keys, collapse ids.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_crypto.h"


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

static EVP_MD_CTX  *ngx_acs_sha256_reused;


void
ngx_acs_sha256_init_process(void)
{
#if (OPENSSL_VERSION_NUMBER >= 0x30000000L)
    if (ngx_acs_sha256_md == NULL) {
        ngx_acs_sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }
#endif

    if (ngx_acs_sha256_reused == NULL) {
        ngx_acs_sha256_reused = EVP_MD_CTX_new();
    }
}


void
ngx_acs_sha256_exit_process(void)
{
    EVP_MD_CTX_free(ngx_acs_sha256_reused);
    ngx_acs_sha256_reused = NULL;

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


EVP_MD_CTX *
ngx_acs_sha256_ctx(void)
{
    return ngx_acs_sha256_reused;
}
