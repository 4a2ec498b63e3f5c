
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Small JSON and encoding helpers on plain buffers.
 */


#ifndef _NGX_ACS_JSON_H_INCLUDED_
#define _NGX_ACS_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <yajl/yajl_tree.h>
#include <yajl/yajl_gen.h>


/* a JSON text written into a pool (ngx_acs_json.c has the rules) */

typedef struct {
    yajl_gen                    g;
    yajl_gen_status             rc;
    ngx_pool_t                 *pool;
} ngx_acs_gen_t;


size_t ngx_acs_json_escape_len(ngx_str_t *s);
u_char *ngx_acs_json_escape(u_char *dst, ngx_str_t *s);

/* toast XML: the five entities; other controls than tab, CR, LF: spaces */
size_t ngx_acs_xml_escape_len(ngx_str_t *s);
u_char *ngx_acs_xml_escape(u_char *dst, ngx_str_t *s);

/*
 * A client's string made safe for a log line (escaped, cut); never NULL;
 * s itself when it is safe as it is, else a copy in pool
 */
ngx_str_t *ngx_acs_log_str(ngx_pool_t *pool, ngx_str_t *s);

ngx_int_t ngx_acs_base64url_decode(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);

/*
 * Limits of every JSON tree the module builds (ngx_acs_json_check() says
 * why): the deepest real input, a key set, nests 4 levels, and Microsoft
 * Entra's key set holds about 150 values.
 */
#define NGX_ACS_JSON_DEPTH_MAX   32
#define NGX_ACS_JSON_TOKENS_MAX  16384

/* NULL when yajl_tree may build the text, else why not */
char *ngx_acs_json_check(ngx_str_t *json);

/*
 * yajl_tree over a copy of the input; the tree is freed with the pool.
 * NULL for invalid JSON, and for text that ngx_acs_json_check() refuses.
 */
yajl_val ngx_acs_json_tree(ngx_pool_t *pool, ngx_str_t *json);
ngx_int_t ngx_acs_json_tree_string(yajl_val obj, const char *key,
    ngx_str_t *value);
yajl_val ngx_acs_json_tree_get(yajl_val obj, const char *key);


ngx_int_t ngx_acs_gen_init(ngx_acs_gen_t *gen, ngx_pool_t *pool);
ngx_int_t ngx_acs_gen_done(ngx_acs_gen_t *gen, ngx_str_t *out);
void ngx_acs_gen_key(ngx_acs_gen_t *gen, char *key);
void ngx_acs_gen_str(ngx_acs_gen_t *gen, ngx_str_t *value);
void ngx_acs_gen_cstr(ngx_acs_gen_t *gen, char *value);
void ngx_acs_gen_pair(ngx_acs_gen_t *gen, char *key, ngx_str_t *value);
void ngx_acs_gen_int(ngx_acs_gen_t *gen, ngx_int_t n);
void ngx_acs_gen_num(ngx_acs_gen_t *gen, char *key, long long n);
void ngx_acs_gen_map_open(ngx_acs_gen_t *gen);
void ngx_acs_gen_map_close(ngx_acs_gen_t *gen);
void ngx_acs_gen_array_open(ngx_acs_gen_t *gen);
void ngx_acs_gen_array_close(ngx_acs_gen_t *gen);


#endif /* _NGX_ACS_JSON_H_INCLUDED_ */
