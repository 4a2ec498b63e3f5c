
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * SHA-256, fetched once per worker (OpenSSL 3 looks EVP_sha256() up again
 * for every digest otherwise).
 */


#ifndef _NGX_ACS_CRYPTO_H_INCLUDED_
#define _NGX_ACS_CRYPTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <openssl/evp.h>


void ngx_acs_sha256_init_process(void);
void ngx_acs_sha256_exit_process(void);

/* the worker's SHA-256, or OpenSSL's default one outside workers */
const EVP_MD *ngx_acs_sha256(void);

/*
 * A digest context of the worker, reused (no allocation per digest):
 * NULL outside workers or when it could not be made.  Initialised and
 * finished by its user, who must not call out before it is done with it.
 */
EVP_MD_CTX *ngx_acs_sha256_ctx(void);


#endif /* _NGX_ACS_CRYPTO_H_INCLUDED_ */
