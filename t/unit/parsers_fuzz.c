
/*
 * The small parsers on arbitrary bytes: connection strings (ngx_acs_sas.c),
 * strict base64url and JSON trees (ngx_acs_json.c), as used for JWT
 * segments, JWKS files and registration bodies.  A libFuzzer target with
 * -DNGX_ACS_FUZZ, else a replay program like event_fuzz.c.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_json.h"
#include "ngx_acs_sas.h"


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);


static void
ngx_acs_fuzz_one(const u_char *data, size_t size)
{
    yajl_val     tree, keys;
    ngx_str_t    in, out, ep, kn, k, s;
    ngx_pool_t  *pool;
    const char  *err;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return;
    }

    in.data = (u_char *) data;
    in.len = size;

    if (ngx_acs_connection_string(&in, &ep, &kn, &k, &err) == NGX_OK) {
        if (ep.len == 0 || kn.len == 0 || k.len == 0) {
            abort();
        }
    }

    if (ngx_acs_base64url_decode(pool, &in, &out) == NGX_OK) {
        (void) ngx_acs_json_tree(pool, &out);
    }

    tree = ngx_acs_json_tree(pool, &in);

    if (tree) {
        (void) ngx_acs_json_tree_string(tree, "alg", &s);
        keys = ngx_acs_json_tree_get(tree, "keys");
        (void) keys;
    }

    ngx_destroy_pool(pool);
}


void
ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay)
{
    (void) replay;

    ngx_acs_fuzz_one(data, size);
}
