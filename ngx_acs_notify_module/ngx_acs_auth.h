
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Authentication of Event Grid deliveries: shared secrets and Microsoft
 * Entra ID bearer tokens (RS256 JWTs checked against a key set, see
 * ngx_acs_jwks.h).
 */


#ifndef _NGX_ACS_AUTH_H_INCLUDED_
#define _NGX_ACS_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <openssl/evp.h>


#define NGX_ACS_TOKEN_MAX        8192
#define NGX_ACS_EVENTGRID_APP_ID  "4962773b-9cdb-44cf-a8bf-237846a00ab7"


typedef struct ngx_acs_entra_s  ngx_acs_entra_t;


/* a secret as SHA-256 digest: compared in constant time, never kept clear */

typedef struct {
    u_char                      digest[32];
} ngx_acs_secret_t;


/* parses the arguments of acs_notify_secret */
char *ngx_acs_secret_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_http_complex_value_t **value, ngx_array_t **secrets,
    ngx_flag_t *in_query);

ngx_int_t ngx_acs_secret_digest(ngx_str_t *value, ngx_acs_secret_t *s);
ngx_int_t ngx_acs_secret_match(ngx_array_t *secrets, ngx_str_t *value);

/* parses the arguments of acs_notify_entra, reads a key set file */
char *ngx_acs_entra_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_entra_t **entra);

/* 1 when its keys are fetched over https (the worker needs libcurl) */
ngx_uint_t ngx_acs_entra_remote(ngx_acs_entra_t *entra);

/* in a worker: keeps the key set current (ngx_acs_jwks.h) */
ngx_int_t ngx_acs_entra_init_process(ngx_acs_entra_t *entra,
    ngx_cycle_t *cycle);

/*
 * NGX_OK: the token is valid for this configuration now.
 * NGX_DECLINED: it is not; *reason says why (no secret in it).
 * NGX_AGAIN: it cannot be told yet, there are no signing keys yet.
 * NGX_ERROR: out of memory or a library failure.
 */
ngx_int_t ngx_acs_entra_verify(ngx_acs_entra_t *entra, ngx_str_t *token,
    time_t now, ngx_pool_t *pool, ngx_log_t *log, const char **reason);


#endif /* _NGX_ACS_AUTH_H_INCLUDED_ */
