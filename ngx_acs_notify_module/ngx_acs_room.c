
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Headroom.  LMDB copies every page it changes, deletes included, so a
 * map that writes filled to the last page refuses deletes too
 * (MDB_MAP_FULL).  Registrations are refused with 507 while fewer than
 * NGX_ACS_HEADROOM bytes of the map are free (past the last page used or
 * on LMDB's free list, whose records hold the count of their pages
 * first), and a delete or a sweep commits a few records per transaction
 * (ngx_acs_registry.c), so that it needs a few pages of that room, and
 * what it frees is reused by the next ones.
 *
 * The same room on the disk: data.mdb is kept allocated NGX_ACS_HEADROOM
 * past its last page in use and the record to write, so that deletes, the
 * sweep and gone handles, which write in the file's pages, still commit
 * when the disk is full; a registration the disk has no room for is
 * refused before LMDB writes (NGX_AGAIN, 507).  The file is allocated with
 * fallocate(2), or where the filesystem cannot, written with zeros, in
 * the write transaction of the registration: no other writer then, and
 * past the last page in use no reader looks.  It grows NGX_ACS_DISK_STEP
 * ahead when it can.  A copy-on-write filesystem (btrfs, ZFS) needs new
 * blocks for every write: there, a delete may fail too when the disk is
 * full.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <lmdb.h>

#include "ngx_acs_room.h"


#define NGX_ACS_DISK_STEP    (1024 * 1024)
#define NGX_ACS_ZEROS        (64 * 1024)


static ngx_int_t ngx_acs_room_reserve(ngx_acs_room_t *room, off_t size,
    off_t used, off_t end, off_t ahead, ngx_log_t *log);
static ngx_int_t ngx_acs_room_zeros(ngx_acs_room_t *room, off_t from,
    off_t end, off_t ahead, ngx_log_t *log);
static ngx_int_t ngx_acs_room_fail(ngx_log_t *log, int rc, const char *op);


ngx_int_t
ngx_acs_room_map(ngx_acs_room_t *room, MDB_txn *rtxn, size_t need,
    ngx_log_t *log, size_t *pages)
{
    int           rc;
    size_t        n, free;
    MDB_val       k, v;
    MDB_cursor   *cur;
    MDB_envinfo   info;

    rc = mdb_env_info(room->env, &info);

    if (rc == 0) {
        rc = mdb_cursor_open(rtxn, 0, &cur);
    }

    if (rc != 0) {
        return ngx_acs_room_fail(log, rc, "free list");
    }

    free = info.me_mapsize / room->psize - (info.me_last_pgno + 1);

    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
    {
        if (v.mv_size >= sizeof(size_t)) {
            ngx_memcpy(&n, v.mv_data, sizeof(size_t));
            free += n;
        }
    }

    mdb_cursor_close(cur);

    if (rc != MDB_NOTFOUND) {
        return ngx_acs_room_fail(log, rc, "free list");
    }

    /* the record's pages, and as many again for the tree it goes in */

    *pages = (NGX_ACS_HEADROOM + 2 * need + room->psize - 1) / room->psize;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify_registry: %uz pages free, %uz wanted",
                   free, *pages);

    return (free >= *pages) ? NGX_OK : NGX_ABORT;
}


ngx_int_t
ngx_acs_room_disk(ngx_acs_room_t *room, size_t pages, ngx_log_t *log)
{
    int              rc;
    off_t            size, used, end, ahead;
    MDB_envinfo      info;
    ngx_file_info_t  fi;

    rc = mdb_env_info(room->env, &info);
    if (rc != 0) {
        return ngx_acs_room_fail(log, rc, "mdb_env_info()");
    }

    if (ngx_fd_info(room->fd, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                      "acs_notify_registry: " ngx_fd_info_n " \"%V\" failed",
                      room->file);
        return NGX_ERROR;
    }

    size = ngx_file_size(&fi);
    used = (off_t) (info.me_last_pgno + 1) * room->psize;
    end = ngx_min((off_t) info.me_mapsize,
                  used + (off_t) (pages * room->psize));

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, log, 0,
                   "acs_notify_registry: data.mdb %O bytes, %O in use, %O "
                   "wanted", size, used, end);

    if (size >= end) {
        return NGX_OK;
    }

    ahead = ngx_min((off_t) info.me_mapsize, end + NGX_ACS_DISK_STEP);

    return ngx_acs_room_reserve(room, size, used, end, ahead, log);
}


/* the file allocated up to end at least, up to ahead if the disk has room */

static ngx_int_t
ngx_acs_room_reserve(ngx_acs_room_t *room, off_t size, off_t used,
    off_t end, off_t ahead, ngx_log_t *log)
{
    ngx_err_t  err;

    if (room->zeros) {
        return ngx_acs_room_zeros(room, ngx_max(size, used), end, ahead,
                                  log);
    }

#if (NGX_LINUX)

    if (fallocate(room->fd, 0, size, ahead - size) == 0) {
        return NGX_OK;
    }

    /* the step may not fit where what is needed does */

    if (fallocate(room->fd, 0, size, end - size) == 0) {
        return NGX_OK;
    }

    err = ngx_errno;

#else

    err = NGX_ENOSYS;

#endif

    if (err == NGX_ENOSPC || err == EDQUOT) {
        room->err = err;
        return NGX_AGAIN;
    }

    if (err == EOPNOTSUPP || err == NGX_ENOSYS) {
        ngx_log_debug0(NGX_LOG_DEBUG_CORE, log, err,
                       "acs_notify_registry: no fallocate(), zeros written");

        room->zeros = 1;

        return ngx_acs_room_zeros(room, ngx_max(size, used), end, ahead,
                                  log);
    }

    ngx_log_error(NGX_LOG_ALERT, log, err,
                  "acs_notify_registry: fallocate(\"%V\") failed",
                  room->file);

    return NGX_ERROR;
}


/* zeros written from "from" up to "ahead", or at least up to "end" */

static ngx_int_t
ngx_acs_room_zeros(ngx_acs_room_t *room, off_t from, off_t end, off_t ahead,
    ngx_log_t *log)
{
    ssize_t    n;
    ngx_err_t  err;

    static u_char  zeros[NGX_ACS_ZEROS];

    err = 0;

    while (from < ahead) {
        n = pwrite(room->fd, zeros,
                   (size_t) ngx_min(ahead - from, NGX_ACS_ZEROS), from);

        if (n == -1) {
            err = ngx_errno;

            if (err == NGX_EINTR) {
                continue;
            }

            break;
        }

        from += n;
    }

    if (from >= end) {
        return NGX_OK;
    }

    if (err == NGX_ENOSPC || err == EDQUOT) {
        room->err = err;
        return NGX_AGAIN;
    }

    ngx_log_error(NGX_LOG_ALERT, log, err,
                  "acs_notify_registry: pwrite(\"%V\") failed", room->file);

    return NGX_ERROR;
}


static ngx_int_t
ngx_acs_room_fail(ngx_log_t *log, int rc, const char *op)
{
    ngx_log_error(NGX_LOG_CRIT, log, 0, "acs_notify_registry: %s failed: %s",
                  op, mdb_strerror(rc));

    return NGX_ERROR;
}
