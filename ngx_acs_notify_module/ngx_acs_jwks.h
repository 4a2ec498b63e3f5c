
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The signing keys of Microsoft Entra ID tokens: a JSON Web Key Set read
 * from a file, or fetched over https by every worker (libcurl on nginx's
 * event loop), and kept current on a timer and on an unknown kid.
 */


#ifndef _NGX_ACS_JWKS_H_INCLUDED_
#define _NGX_ACS_JWKS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>


typedef struct ngx_acs_jwks_s  ngx_acs_jwks_t;


typedef struct {
    ngx_str_t                   kid;
    EVP_PKEY                   *pkey;
    u_char                      id[32];     /* SHA-256 of kid, n and e */
} ngx_acs_jwk_t;


/*
 * Configuration: create, then hand every parameter of acs_notify_entra to
 * ngx_acs_jwks_param() (NGX_OK: taken, NGX_DECLINED: not a key set
 * parameter, NGX_ERROR: invalid, logged), then ngx_acs_jwks_init_conf()
 * checks them and reads the file (or the cache of an https key set): it
 * never uses the network.  NGX_DECLINED from it: no jwks= was given.
 */
ngx_acs_jwks_t *ngx_acs_jwks_create(ngx_conf_t *cf);
ngx_int_t ngx_acs_jwks_param(ngx_conf_t *cf, ngx_acs_jwks_t *jwks,
    ngx_str_t *arg);
ngx_int_t ngx_acs_jwks_init_conf(ngx_conf_t *cf, ngx_acs_jwks_t *jwks);

/* 1 when the key set is fetched over https: the worker needs libcurl */
ngx_uint_t ngx_acs_jwks_remote(ngx_acs_jwks_t *jwks);

/* in a worker: the refresh timer; an https key set is fetched at once */
ngx_int_t ngx_acs_jwks_init_process(ngx_acs_jwks_t *jwks,
    ngx_cycle_t *cycle);

/*
 * The key of kid.  NGX_OK and *key; NGX_DECLINED when the current set has
 * no such key (the worker looks for a newer set, at most every 10
 * seconds); NGX_AGAIN when there is no set yet (an https key set not
 * fetched since the worker started, and no cache).
 */
ngx_int_t ngx_acs_jwks_key(ngx_acs_jwks_t *jwks, ngx_str_t *kid,
    time_t now, ngx_log_t *log, ngx_acs_jwk_t **key);

/*
 * Changes whenever the worker takes a new key set; ngx_acs_jwks_has()
 * says whether the key of an id is still in it.
 */
ngx_uint_t ngx_acs_jwks_generation(ngx_acs_jwks_t *jwks);
ngx_uint_t ngx_acs_jwks_has(ngx_acs_jwks_t *jwks, u_char *id);


#endif /* _NGX_ACS_JWKS_H_INCLUDED_ */
