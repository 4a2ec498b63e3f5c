
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Notification Hubs connection strings and SAS tokens.
 */


#ifndef _NGX_ACS_SAS_H_INCLUDED_
#define _NGX_ACS_SAS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_ACS_SAS_LIFETIME   3600     /* seconds a token is signed for */
#define NGX_ACS_SAS_RENEW      600      /* renewed this long before expiry */
#define NGX_ACS_RESOURCE_MAX   512


/*
 * "Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=RULE;
 * SharedAccessKey=KEY" (parts in any order, others ignored): NGX_OK, or
 * NGX_DECLINED with *err
 */
ngx_int_t ngx_acs_connection_string(ngx_str_t *cs, ngx_str_t *endpoint,
    ngx_str_t *key_name, ngx_str_t *key, const char **err);

/*
 * Writes the Authorization header value (docs/dispatch.md, section 1) for
 * resource (any case, lowered here) valid until se into buf (at least
 * ngx_acs_sas_len() bytes); returns its end.
 */
size_t ngx_acs_sas_len(ngx_str_t *resource, ngx_str_t *key_name);
u_char *ngx_acs_sas(u_char *buf, ngx_str_t *resource, ngx_str_t *key_name,
    ngx_str_t *key, time_t se);


#endif /* _NGX_ACS_SAS_H_INCLUDED_ */
