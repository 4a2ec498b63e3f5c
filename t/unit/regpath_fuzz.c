
/*
 * The registration API's path decoder (ngx_acs_regpath.c) on arbitrary
 * bytes, for fuzz_main.c.  Beyond not crashing: a path that parses with
 * valid ids parses again to the same ids once they are percent-encoded.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_acs_regpath.h"


void ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay);


void
ngx_acs_fuzz_input(const u_char *data, size_t size, ngx_uint_t replay)
{
    u_char              *buf, *p;
    size_t               len;
    ngx_pool_t          *pool;
    const char          *code, *reason;
    ngx_acs_reg_path_t   path, again;

    (void) replay;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return;
    }

    if (ngx_acs_reg_path_parse(pool, (u_char *) data, (u_char *) data + size,
                               &path)
        != NGX_OK
        || ngx_acs_reg_path_check(&path, &code, &reason) != NGX_OK)
    {
        goto done;
    }

    if (path.raw_id.len == 0 || path.raw_id.len > 256
        || path.device_id.len > 64)
    {
        abort();
    }

    /* "users/" enc(raw id) "/devices/" device id */

    len = sizeof("users//devices/") - 1 + 3 * path.raw_id.len
          + path.device_id.len;

    buf = ngx_pnalloc(pool, len);
    if (buf == NULL) {
        goto done;
    }

    p = ngx_cpymem(buf, "users/", 6);
    p = (u_char *) ngx_escape_uri(p, path.raw_id.data, path.raw_id.len,
                                  NGX_ESCAPE_URI_COMPONENT);

    if (path.devices) {
        p = ngx_cpymem(p, "/devices", 8);

        if (path.device_id.len) {
            *p++ = '/';
            p = ngx_cpymem(p, path.device_id.data, path.device_id.len);
        }
    }

    if (ngx_acs_reg_path_parse(pool, buf, p, &again) != NGX_OK
        || again.raw_id.len != path.raw_id.len
        || ngx_memcmp(again.raw_id.data, path.raw_id.data, path.raw_id.len)
           != 0
        || again.device_id.len != path.device_id.len
        || (path.device_id.len
            && ngx_memcmp(again.device_id.data, path.device_id.data,
                          path.device_id.len)
               != 0)
        || again.devices != path.devices)
    {
        abort();
    }

done:

    ngx_destroy_pool(pool);
}
