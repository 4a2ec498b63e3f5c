
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * One LMDB database.  Key and value: a device's key and record
 * (ngx_acs_record.c), the devices of a user one contiguous range.  Each
 * worker opens the environment after fork() (an LMDB environment must not
 * cross it) and keeps one reset read transaction to renew per lookup.
 * Writes are committed, and so synced to disk, before they are answered.
 *
 * A registration that does not fit is refused (NGX_ABORT: the map is
 * full; NGX_AGAIN: the disk is), and nothing is written.  Refusals come in
 * episodes, logged at crit by the first one only, in whichever worker it
 * is (the state is in a small shared zone), and at notice when a
 * registration is written again: a full disk means one line, not one per
 * request.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <lmdb.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_room.h"
#include "ngx_acs_record.h"
#include "ngx_acs_registry.h"


/* records deleted per transaction: a few pages of the map's headroom */

#define NGX_ACS_TXN_DELETES  32


/* the episode of refused registrations */

#define NGX_ACS_REG_WRITABLE   0
#define NGX_ACS_REG_MAP_FULL   1
#define NGX_ACS_REG_DISK_FULL  2


typedef struct {
    ngx_atomic_t                state;
} ngx_acs_registry_sh_t;


struct ngx_acs_registry_s {
    ngx_str_t                   path;
    size_t                      max_size;
    time_t                      ttl;
    ngx_uint_t                  max_devices;

    MDB_env                    *env;
    MDB_dbi                     dbi;
    MDB_txn                    *rtxn;      /* reset between lookups */

    u_char                      sweep_key[NGX_ACS_RECORD_KEY_MAX];
    size_t                      sweep_len;

    ngx_shm_zone_t             *zone;
    ngx_acs_registry_sh_t      *sh;        /* every worker's */
    ngx_str_t                   file;      /* PATH/data.mdb */
    ngx_acs_room_t              room;      /* LMDB's page size, data.mdb */
};


static ngx_int_t ngx_acs_registry_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_acs_registry_open(ngx_acs_registry_t *reg,
    ngx_log_t *log);
static ngx_int_t ngx_acs_registry_write(ngx_acs_registry_t *reg,
    ngx_log_t *log, MDB_txn **txn, MDB_cursor **cur);
static ngx_int_t ngx_acs_registry_room(ngx_acs_registry_t *reg,
    size_t need, ngx_log_t *log, size_t *pages);
static ngx_int_t ngx_acs_registry_sweep_txn(ngx_acs_registry_t *reg,
    ngx_log_t *log, ngx_uint_t max, ngx_uint_t *visited,
    ngx_uint_t *purged);
static int ngx_acs_registry_delete_in(MDB_cursor *cur, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_str_t *handle, ngx_uint_t max,
    ngx_uint_t *found, ngx_uint_t *deleted);
static ngx_int_t ngx_acs_registry_delete_end(ngx_acs_registry_t *reg,
    MDB_txn *txn, MDB_cursor *cur, int rc, ngx_uint_t deleted,
    ngx_log_t *log);
static ngx_int_t ngx_acs_registry_delete_all(ngx_acs_registry_t *reg,
    ngx_str_t *raw_id, ngx_str_t *device_id, ngx_str_t *handle,
    ngx_log_t *log);
static ngx_int_t ngx_acs_registry_read_begin(ngx_acs_registry_t *reg,
    ngx_log_t *log);
static void ngx_acs_registry_read_end(ngx_acs_registry_t *reg);
static ngx_int_t ngx_acs_registry_fail(ngx_log_t *log, int rc,
    const char *op);
static ngx_int_t ngx_acs_registry_write_failed(ngx_acs_registry_t *reg,
    ngx_log_t *log, int rc, const char *op);
static void ngx_acs_registry_episode(ngx_acs_registry_t *reg,
    ngx_uint_t state, ngx_err_t err, ngx_log_t *log);


static ngx_str_t  ngx_acs_registry_zone_name =
    ngx_string("acs_notify_registry");


char *
ngx_acs_registry_create(ngx_conf_t *cf, ngx_str_t *args, ngx_uint_t nargs,
    ngx_acs_registry_t **registry)
{
    ssize_t              size;
    ngx_int_t            n;
    ngx_str_t            v;
    ngx_uint_t           i;
    ngx_acs_registry_t  *reg;

    reg = ngx_pcalloc(cf->pool, sizeof(ngx_acs_registry_t));
    if (reg == NULL) {
        return NGX_CONF_ERROR;
    }

    reg->path = args[0];
    reg->max_size = 128 * 1024 * 1024;
    reg->ttl = 86400;
    reg->max_devices = 16;

    if (ngx_conf_full_name(cf->cycle, &reg->path, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    reg->file.len = reg->path.len + sizeof("/data.mdb") - 1;
    reg->file.data = ngx_pnalloc(cf->pool, reg->file.len);
    if (reg->file.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_sprintf(reg->file.data, "%V/data.mdb", &reg->path);
    reg->room.file = &reg->file;

    for (i = 1; i < nargs; i++) {

        if (ngx_acs_conf_param(&args[i], "max_size=", &v)) {

            size = ngx_parse_size(&v);
            /* four times the headroom kept for deletes */

            if (size == NGX_ERROR || size < 4 * NGX_ACS_HEADROOM) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_registry: invalid max_size "
                                   "\"%V\", expected at least 1m", &v);
                return NGX_CONF_ERROR;
            }

            reg->max_size = size;
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "ttl=", &v)) {

            n = ngx_parse_time(&v, 1);
            if (n == NGX_ERROR || n < 1 || n > 15552000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_registry: invalid ttl \"%V\", "
                                   "expected 1s to 180d", &v);
                return NGX_CONF_ERROR;
            }

            reg->ttl = n;
            continue;
        }

        if (ngx_acs_conf_param(&args[i], "max_devices=", &v)) {

            n = ngx_atoi(v.data, v.len);
            if (n == NGX_ERROR || n < 1 || n > 1000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "acs_notify_registry: invalid max_devices "
                                   "\"%V\", expected 1 to 1000", &v);
                return NGX_CONF_ERROR;
            }

            reg->max_devices = n;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "acs_notify_registry: invalid parameter \"%V\"",
                           &args[i]);
        return NGX_CONF_ERROR;
    }

    /* the episode of refusals, shared by the workers */

    reg->zone = ngx_shared_memory_add(cf, &ngx_acs_registry_zone_name,
                                      8 * ngx_pagesize,
                                      &ngx_acs_registry_zone_name);
    if (reg->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    reg->zone->init = ngx_acs_registry_init_zone;
    reg->zone->data = reg;

    *registry = reg;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_acs_registry_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_acs_registry_t  *oreg = data;

    ngx_slab_pool_t     *shpool;
    ngx_acs_registry_t  *reg;

    reg = shm_zone->data;

    if (oreg) {
        /* a reload: an episode goes on */
        reg->sh = oreg->sh;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        reg->sh = shpool->data;
        return NGX_OK;
    }

    reg->sh = ngx_slab_calloc(shpool, sizeof(ngx_acs_registry_sh_t));
    if (reg->sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = reg->sh;

    return NGX_OK;
}


/*
 * While the configuration is read: create the directory and check that
 * LMDB opens it (closed again at once, before any fork()).  Here, not in
 * init_module, a failure only refuses a reload: nginx ends the master
 * when an init_module fails.
 */

ngx_int_t
ngx_acs_registry_check(ngx_acs_registry_t *reg, ngx_log_t *log)
{
    ngx_err_t  err;

    if (ngx_create_dir(reg->path.data, 0700) == NGX_FILE_ERROR) {
        err = ngx_errno;
        if (err != NGX_EEXIST) {
            ngx_log_error(NGX_LOG_EMERG, log, err,
                          "acs_notify_registry: cannot create \"%V\"",
                          &reg->path);
            return NGX_ERROR;
        }
    }

    if (ngx_acs_registry_open(reg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    mdb_env_close(reg->env);
    reg->env = NULL;

    return NGX_OK;
}


/* in the master, before any worker exists: the files to the workers' user */

ngx_int_t
ngx_acs_registry_init_module(ngx_cycle_t *cycle, ngx_acs_registry_t *reg)
{
    u_char           *file;
    ngx_uint_t        i;
    ngx_core_conf_t  *ccf;

    static const char  *files[] = { "/data.mdb", "/lock.mdb" };

    if (geteuid() != 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (ccf->user == (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        return NGX_OK;
    }

    file = ngx_pnalloc(cycle->pool, reg->path.len + sizeof("/data.mdb"));
    if (file == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < 3; i++) {
        if (i == 0) {
            ngx_cpystrn(file, reg->path.data, reg->path.len + 1);

        } else {
            ngx_cpystrn(ngx_cpymem(file, reg->path.data, reg->path.len),
                        (u_char *) files[i - 1], sizeof("/data.mdb"));
        }

        if (chown((char *) file, ccf->user, (gid_t) -1) == -1) {
            /* an error here would end the master: the workers will say */
            ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                          "acs_notify_registry: chown(\"%s\") failed", file);
            return NGX_OK;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_registry_init_process(ngx_cycle_t *cycle, ngx_acs_registry_t *reg)
{
    int  dead;

    if (ngx_acs_registry_open(reg, cycle->log) != NGX_OK) {
        return NGX_ERROR;
    }

    /* reader slots of workers killed in a read transaction */

    if (mdb_reader_check(reg->env, &dead) == 0 && dead) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "acs_notify_registry: cleared %d stale readers", dead);
    }

    return NGX_OK;
}


void
ngx_acs_registry_exit_process(ngx_acs_registry_t *reg)
{
    if (reg->rtxn) {
        mdb_txn_abort(reg->rtxn);
        reg->rtxn = NULL;
    }

    if (reg->env) {
        mdb_env_close(reg->env);
        reg->env = NULL;
    }
}


time_t
ngx_acs_registry_ttl(ngx_acs_registry_t *reg)
{
    return reg->ttl;
}


static ngx_int_t
ngx_acs_registry_open(ngx_acs_registry_t *reg, ngx_log_t *log)
{
    int        rc;
    MDB_txn   *txn;
    MDB_stat   st;

    rc = mdb_env_create(&reg->env);
    if (rc != 0) {
        return ngx_acs_registry_fail(log, rc, "mdb_env_create()");
    }

    rc = mdb_env_set_mapsize(reg->env, reg->max_size);

    if (rc == 0) {
        /* a reader slot per worker, old and new ones during a reload */
        rc = mdb_env_set_maxreaders(reg->env, 1024);
    }

    if (rc == 0) {
        /* NOTLS: a read transaction is not tied to a thread */
        rc = mdb_env_open(reg->env, (char *) reg->path.data, MDB_NOTLS, 0600);
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "acs_notify_registry: cannot open \"%V\": %s",
                      &reg->path, mdb_strerror(rc));
        mdb_env_close(reg->env);
        reg->env = NULL;
        return NGX_ERROR;
    }

    rc = mdb_txn_begin(reg->env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, NULL, 0, &reg->dbi);
        if (rc == 0) {
            rc = mdb_txn_commit(txn);

        } else {
            mdb_txn_abort(txn);
        }
    }

    if (rc == 0) {
        rc = mdb_env_stat(reg->env, &st);
        reg->room.psize = st.ms_psize;
    }

    if (rc == 0) {
        rc = mdb_env_get_fd(reg->env, &reg->room.fd);
        reg->room.env = reg->env;
    }

    if (rc != 0) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "acs_notify_registry: cannot open the database in "
                      "\"%V\": %s", &reg->path, mdb_strerror(rc));
        mdb_env_close(reg->env);
        reg->env = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_registry_put(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_acs_device_t *dev, ngx_log_t *log, ngx_uint_t *created)
{
    int           rc;
    u_char        kbuf[NGX_ACS_RECORD_KEY_MAX];
    size_t        prefix, pages;
    time_t        now;
    MDB_val       key, val, k, v;
    MDB_txn      *txn;
    ngx_int_t     room;
    ngx_uint_t    others, exists;
    const char   *op;
    MDB_cursor   *cur;

    now = ngx_time();
    pages = 0;

    prefix = ngx_acs_record_key(kbuf, raw_id, NULL);
    key.mv_data = kbuf;
    key.mv_size = ngx_acs_record_key(kbuf, raw_id, &dev->device_id);

    val.mv_size = ngx_acs_record_size(dev);

    room = ngx_acs_registry_room(reg, key.mv_size + val.mv_size, log,
                                 &pages);

    if (room == NGX_ABORT) {
        ngx_acs_registry_episode(reg, NGX_ACS_REG_MAP_FULL, 0, log);
    }

    if (room != NGX_OK) {
        return room;
    }

    if (ngx_acs_registry_write(reg, log, &txn, &cur) != NGX_OK) {
        return NGX_ERROR;
    }

    room = ngx_acs_room_disk(&reg->room, pages, log);

    if (room != NGX_OK) {
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);

        if (room == NGX_AGAIN) {
            ngx_acs_registry_episode(reg, NGX_ACS_REG_DISK_FULL,
                                     reg->room.err, log);
        }

        return room;
    }

    /* count the user's other live devices, purging expired ones */

    others = 0;
    exists = 0;

    k.mv_data = kbuf;
    k.mv_size = prefix;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size < prefix || ngx_memcmp(k.mv_data, kbuf, prefix) != 0) {
            break;
        }

        if (ngx_acs_record_expires(v.mv_data, v.mv_size) <= now) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                mdb_cursor_close(cur);
                goto failed;
            }
            continue;
        }

        if (k.mv_size == key.mv_size
            && ngx_memcmp(k.mv_data, key.mv_data, key.mv_size) == 0)
        {
            exists = 1;

        } else {
            others++;
        }
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        goto failed;
    }

    if (!exists && others >= reg->max_devices) {
        mdb_txn_abort(txn);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify registry: put refused, the user has %ui "
                       "other devices", others);
        return NGX_BUSY;
    }

    /* the record */

    rc = mdb_put(txn, reg->dbi, &key, &val, MDB_RESERVE);
    if (rc != 0) {
        goto failed;
    }

    ngx_acs_record_write(val.mv_data, dev, now);

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        op = "mdb_txn_commit()";
        goto refused;
    }

    *created = !exists;

    if (reg->sh->state != NGX_ACS_REG_WRITABLE) {
        ngx_acs_registry_episode(reg, NGX_ACS_REG_WRITABLE, 0, log);
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify registry: put, %s, %uz bytes, %ui other "
                   "devices", exists ? "replaced" : "created",
                   key.mv_size + val.mv_size, others);

    return NGX_OK;

failed:

    mdb_txn_abort(txn);
    op = "put";

refused:

    if (rc == MDB_MAP_FULL) {
        ngx_acs_registry_episode(reg, NGX_ACS_REG_MAP_FULL, 0, log);
        return NGX_ABORT;
    }

    return ngx_acs_registry_write_failed(reg, log, rc, op);
}


ngx_int_t
ngx_acs_registry_get(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_pool_t *pool, ngx_log_t *log,
    ngx_acs_device_t *dev)
{
    int        rc;
    u_char     kbuf[NGX_ACS_RECORD_KEY_MAX];
    size_t     prefix;
    MDB_val    key, val;
    ngx_int_t  n;

    prefix = ngx_acs_record_key(kbuf, raw_id, NULL);
    key.mv_data = kbuf;
    key.mv_size = ngx_acs_record_key(kbuf, raw_id, device_id);

    if (ngx_acs_registry_read_begin(reg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = mdb_get(reg->rtxn, reg->dbi, &key, &val);

    if (rc == MDB_NOTFOUND
        || (rc == 0
            && ngx_acs_record_expires(val.mv_data, val.mv_size) <= ngx_time()))
    {
        ngx_acs_registry_read_end(reg);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify registry: get, %s",
                       rc ? "not found" : "expired");
        return NGX_DECLINED;
    }

    if (rc != 0) {
        ngx_acs_registry_read_end(reg);
        return ngx_acs_registry_fail(log, rc, "mdb_get()");
    }

    n = ngx_acs_record_read(key.mv_data, key.mv_size, prefix, val.mv_data,
                            val.mv_size, pool, dev);

    ngx_acs_registry_read_end(reg);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify registry: get, %s",
                   n == NGX_OK ? "found" : "not readable");

    return n;
}


/* the live devices of a user, copied into the pool */

ngx_int_t
ngx_acs_registry_list(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_pool_t *pool, ngx_log_t *log, ngx_array_t *devices)
{
    int                rc;
    u_char             kbuf[NGX_ACS_RECORD_KEY_MAX];
    size_t             prefix;
    time_t             now;
    MDB_val            k, v;
    ngx_int_t          n;
    ngx_uint_t         expired;
    MDB_cursor        *cur;
    ngx_acs_device_t  *dev;

    now = ngx_time();
    prefix = ngx_acs_record_key(kbuf, raw_id, NULL);
    expired = 0;

    if (ngx_acs_registry_read_begin(reg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = mdb_cursor_open(reg->rtxn, reg->dbi, &cur);
    if (rc != 0) {
        ngx_acs_registry_read_end(reg);
        return ngx_acs_registry_fail(log, rc, "mdb_cursor_open()");
    }

    k.mv_data = kbuf;
    k.mv_size = prefix;
    n = NGX_OK;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size < prefix || ngx_memcmp(k.mv_data, kbuf, prefix) != 0) {
            break;
        }

        if (ngx_acs_record_expires(v.mv_data, v.mv_size) <= now) {
            expired++;
            continue;
        }

        dev = ngx_array_push(devices);
        if (dev == NULL) {
            n = NGX_ERROR;
            break;
        }

        if (ngx_acs_record_read(k.mv_data, k.mv_size, prefix, v.mv_data,
                                v.mv_size, pool, dev)
            != NGX_OK)
        {
            devices->nelts--;
            continue;
        }
    }

    mdb_cursor_close(cur);
    ngx_acs_registry_read_end(reg);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify registry: list, %ui live devices, %ui "
                   "expired", devices->nelts, expired);

    return n;
}


/* a device, or every device of the user when device_id is NULL */

ngx_int_t
ngx_acs_registry_delete(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_log_t *log)
{
    return ngx_acs_registry_delete_all(reg, raw_id, device_id, NULL, log);
}


/*
 * Deletes the devices of a user: all of them, the one of device_id, or
 * those holding handle.  NGX_OK when a live one was, NGX_DECLINED when
 * none (an expired registration is as good as absent, and goes too).  At
 * most NGX_ACS_TXN_DELETES records go per transaction: a user with more
 * takes several, each committed.
 */

static ngx_int_t
ngx_acs_registry_delete_all(ngx_acs_registry_t *reg, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_str_t *handle, ngx_log_t *log)
{
    int          rc;
    MDB_txn     *txn;
    ngx_int_t    end;
    ngx_uint_t   found, deleted;
    MDB_cursor  *cur;

    found = 0;

    do {
        if (ngx_acs_registry_write(reg, log, &txn, &cur) != NGX_OK) {
            return NGX_ERROR;
        }

        deleted = 0;

        rc = ngx_acs_registry_delete_in(cur, raw_id, device_id, handle,
                                        NGX_ACS_TXN_DELETES, &found,
                                        &deleted);

        end = ngx_acs_registry_delete_end(reg, txn, cur, rc, deleted, log);
        if (end != NGX_OK) {
            return end;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                       "acs_notify registry: delete, %ui records, %ui live",
                       deleted, found);

    } while (deleted == NGX_ACS_TXN_DELETES);

    return found ? NGX_OK : NGX_DECLINED;
}


/*
 * Handles the hubs reported gone, their registrations deleted in one
 * transaction, so one commit for many: as many of them as fit in about
 * NGX_ACS_TXN_DELETES records (a user has at most max_devices).  *done
 * says how many were; the caller gives the rest again later.
 */

ngx_int_t
ngx_acs_registry_remove_handles(ngx_acs_registry_t *reg,
    ngx_acs_gone_t *gone, ngx_uint_t n, ngx_log_t *log, ngx_uint_t *done)
{
    int          rc;
    MDB_txn     *txn;
    ngx_int_t    end;
    ngx_uint_t   i, found, deleted;
    MDB_cursor  *cur;

    *done = 0;

    if (n == 0) {
        return NGX_OK;
    }

    if (ngx_acs_registry_write(reg, log, &txn, &cur) != NGX_OK) {
        return NGX_ERROR;
    }

    found = 0;
    deleted = 0;
    rc = 0;

    for (i = 0; i < n && deleted < NGX_ACS_TXN_DELETES; i++) {
        rc = ngx_acs_registry_delete_in(cur, &gone[i].raw_id, NULL,
                                        &gone[i].handle, NGX_MAX_UINT32_VALUE,
                                        &found, &deleted);

        if (rc != 0 && rc != MDB_NOTFOUND) {
            break;
        }
    }

    end = ngx_acs_registry_delete_end(reg, txn, cur, rc, deleted, log);
    if (end != NGX_OK) {
        return end;
    }

    *done = i;

    ngx_log_debug3(NGX_LOG_DEBUG_CORE, log, 0,
                   "acs_notify_registry: %ui gone handles, %ui "
                   "registrations removed, %ui left", i, deleted, n - i);

    return NGX_OK;
}


/*
 * The loop of the deletions, in a write transaction: the matching devices
 * of the user go, at most max, counted in *deleted; *found counts the live
 * ones.  0, MDB_NOTFOUND or the error of mdb_cursor_del().
 */

static int
ngx_acs_registry_delete_in(MDB_cursor *cur, ngx_str_t *raw_id,
    ngx_str_t *device_id, ngx_str_t *handle, ngx_uint_t max,
    ngx_uint_t *found, ngx_uint_t *deleted)
{
    int         rc;
    u_char      kbuf[NGX_ACS_RECORD_KEY_MAX];
    size_t      prefix;
    time_t      now;
    MDB_val     k, v;
    ngx_uint_t  n;

    now = ngx_time();
    prefix = ngx_acs_record_key(kbuf, raw_id, NULL);
    n = 0;

    k.mv_data = kbuf;
    k.mv_size = prefix;

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (k.mv_size < prefix || ngx_memcmp(k.mv_data, kbuf, prefix) != 0) {
            return MDB_NOTFOUND;
        }

        if (device_id
            && (k.mv_size != prefix + device_id->len
                || ngx_memcmp((u_char *) k.mv_data + prefix, device_id->data,
                              device_id->len) != 0))
        {
            continue;
        }

        if (handle
            && !ngx_acs_record_handle_is(v.mv_data, v.mv_size, handle))
        {
            continue;
        }

        if (ngx_acs_record_expires(v.mv_data, v.mv_size) > now) {
            (*found)++;
        }

        rc = mdb_cursor_del(cur, 0);
        if (rc != 0) {
            return rc;
        }

        n++;
        (*deleted)++;
    }

    return rc;
}


/*
 * The deletions are committed, undone on an error of theirs (rc), or
 * dropped when there were none.
 */

static ngx_int_t
ngx_acs_registry_delete_end(ngx_acs_registry_t *reg, MDB_txn *txn,
    MDB_cursor *cur, int rc, ngx_uint_t deleted, ngx_log_t *log)
{
    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return ngx_acs_registry_fail(log, rc, "mdb_cursor_del()");
    }

    if (deleted == 0) {
        mdb_txn_abort(txn);
        return NGX_OK;
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return ngx_acs_registry_write_failed(reg, log, rc,
                                             "mdb_txn_commit()");
    }

    return NGX_OK;
}


ngx_int_t
ngx_acs_registry_count(ngx_acs_registry_t *reg, ngx_log_t *log,
    size_t *count)
{
    int       rc;
    MDB_stat  st;

    if (ngx_acs_registry_read_begin(reg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = mdb_stat(reg->rtxn, reg->dbi, &st);

    ngx_acs_registry_read_end(reg);

    if (rc != 0) {
        return ngx_acs_registry_fail(log, rc, "mdb_stat()");
    }

    *count = st.ms_entries;

    return NGX_OK;
}


/*
 * Purges expired registrations, at most max records visited per call,
 * going on from where the previous call stopped and wrapping at the end;
 * a transaction commits every NGX_ACS_TXN_DELETES of them.
 */

ngx_int_t
ngx_acs_registry_sweep(ngx_acs_registry_t *reg, ngx_log_t *log,
    ngx_uint_t max, ngx_uint_t *purged)
{
    ngx_int_t   rc;
    ngx_uint_t  visited, n;

    *purged = 0;
    visited = 0;

    do {
        rc = ngx_acs_registry_sweep_txn(reg, log, max, &visited, &n);
        *purged += n;

    } while (rc == NGX_OK && n == NGX_ACS_TXN_DELETES && visited < max
             && reg->sweep_len);

    return rc;
}


static ngx_int_t
ngx_acs_registry_sweep_txn(ngx_acs_registry_t *reg, ngx_log_t *log,
    ngx_uint_t max, ngx_uint_t *visited, ngx_uint_t *purged)
{
    int          rc;
    time_t       now;
    MDB_val      k, v;
    MDB_txn     *txn;
    MDB_cursor  *cur;

    *purged = 0;
    now = ngx_time();

    if (ngx_acs_registry_write(reg, log, &txn, &cur) != NGX_OK) {
        return NGX_ERROR;
    }

    k.mv_data = reg->sweep_key;
    k.mv_size = reg->sweep_len;

    rc = reg->sweep_len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                        : mdb_cursor_get(cur, &k, &v, MDB_FIRST);

    while (rc == 0 && *visited < max && *purged < NGX_ACS_TXN_DELETES) {

        (*visited)++;

        if (ngx_acs_record_expires(v.mv_data, v.mv_size) <= now) {
            rc = mdb_cursor_del(cur, 0);
            if (rc != 0) {
                break;
            }

            (*purged)++;
        }

        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }

    if (rc == 0 && k.mv_size <= sizeof(reg->sweep_key)) {
        ngx_memcpy(reg->sweep_key, k.mv_data, k.mv_size);
        reg->sweep_len = k.mv_size;

    } else {
        reg->sweep_len = 0;
    }

    mdb_cursor_close(cur);

    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return ngx_acs_registry_fail(log, rc, "sweep");
    }

    ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                   "acs_notify registry: sweep, %ui records seen, %ui "
                   "expired purged", *visited, *purged);

    if (*purged == 0) {
        mdb_txn_abort(txn);
        return NGX_OK;
    }

    rc = mdb_txn_commit(txn);
    if (rc != 0) {
        return ngx_acs_registry_write_failed(reg, log, rc,
                                             "mdb_txn_commit()");
    }

    return NGX_OK;
}


static ngx_int_t
ngx_acs_registry_read_begin(ngx_acs_registry_t *reg, ngx_log_t *log)
{
    int  rc;

    if (reg->env == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "acs_notify_registry: not open in this process");
        return NGX_ERROR;
    }

    if (reg->rtxn) {
        rc = mdb_txn_renew(reg->rtxn);

    } else {
        rc = mdb_txn_begin(reg->env, NULL, MDB_RDONLY, &reg->rtxn);
    }

    if (rc != 0) {
        if (reg->rtxn) {
            mdb_txn_abort(reg->rtxn);
            reg->rtxn = NULL;
        }

        return ngx_acs_registry_fail(log, rc, "read transaction");
    }

    return NGX_OK;
}


static void
ngx_acs_registry_read_end(ngx_acs_registry_t *reg)
{
    mdb_txn_reset(reg->rtxn);
}


/* a write transaction and a cursor in it, or NGX_ERROR, logged */

static ngx_int_t
ngx_acs_registry_write(ngx_acs_registry_t *reg, ngx_log_t *log,
    MDB_txn **txn, MDB_cursor **cur)
{
    int  rc;

    rc = mdb_txn_begin(reg->env, NULL, 0, txn);
    if (rc != 0) {
        return ngx_acs_registry_fail(log, rc, "mdb_txn_begin()");
    }

    rc = mdb_cursor_open(*txn, reg->dbi, cur);
    if (rc != 0) {
        mdb_txn_abort(*txn);
        return ngx_acs_registry_fail(log, rc, "mdb_cursor_open()");
    }

    return NGX_OK;
}


/* room in the map: in the read transaction LMDB shows its free list to */

static ngx_int_t
ngx_acs_registry_room(ngx_acs_registry_t *reg, size_t need, ngx_log_t *log,
    size_t *pages)
{
    ngx_int_t  rc;

    if (ngx_acs_registry_read_begin(reg, log) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_acs_room_map(&reg->room, reg->rtxn, need, log, pages);

    ngx_acs_registry_read_end(reg);

    return rc;
}


/*
 * A write that LMDB could not make: the disk full (NGX_AGAIN), an episode
 * of refusals; or another failure, logged
 */

static ngx_int_t
ngx_acs_registry_write_failed(ngx_acs_registry_t *reg, ngx_log_t *log,
    int rc, const char *op)
{
    if (rc == NGX_ENOSPC || rc == EDQUOT) {
        ngx_acs_registry_episode(reg, NGX_ACS_REG_DISK_FULL, rc, log);
        return NGX_AGAIN;
    }

    return ngx_acs_registry_fail(log, rc, op);
}


/*
 * The first refusal of an episode, in any worker, logs it at crit; the
 * first registration written after it, at notice
 */

static void
ngx_acs_registry_episode(ngx_acs_registry_t *reg, ngx_uint_t state,
    ngx_err_t err, ngx_log_t *log)
{
    ngx_atomic_uint_t  old;

    old = reg->sh->state;

    if (old == state || !ngx_atomic_cmp_set(&reg->sh->state, old, state)) {
        /* logged already, or by another worker just now */
        return;
    }

    switch (state) {

    case NGX_ACS_REG_MAP_FULL:
        ngx_log_error(NGX_LOG_CRIT, log, 0,
                      "acs_notify_registry: database full, raise max_size; "
                      "registrations are refused with 507 until there is "
                      "room");
        break;

    case NGX_ACS_REG_DISK_FULL:
        ngx_log_error(NGX_LOG_CRIT, log, err,
                      "acs_notify_registry: no space left on the disk of "
                      "\"%V\"; registrations are refused with 507 until "
                      "there is", &reg->path);
        break;

    default: /* NGX_ACS_REG_WRITABLE */
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "acs_notify_registry: registrations are written again");
        break;
    }
}


static ngx_int_t
ngx_acs_registry_fail(ngx_log_t *log, int rc, const char *op)
{
    ngx_log_error(NGX_LOG_CRIT, log, 0, "acs_notify_registry: %s failed: %s",
                  op, mdb_strerror(rc));

    return NGX_ERROR;
}
