
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * Room for the writes of the registry on disk: in LMDB's map, and on the
 * disk under data.mdb, so that deletes still commit when either is full.
 */


#ifndef _NGX_ACS_ROOM_H_INCLUDED_
#define _NGX_ACS_ROOM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <lmdb.h>


/* bytes of the map kept free for deletes and expiry */
#define NGX_ACS_HEADROOM     (256 * 1024)


typedef struct {
    MDB_env                    *env;
    size_t                      psize;     /* LMDB's page size */
    ngx_fd_t                    fd;        /* of data.mdb */
    ngx_str_t                  *file;      /* its name, for logs */
    ngx_err_t                   err;       /* why the disk had no room */
    ngx_uint_t                  zeros;     /* unsigned:1, no fallocate() */
} ngx_acs_room_t;


/*
 * In a read transaction (LMDB shows its free list to those only): NGX_OK
 * when the map keeps NGX_ACS_HEADROOM bytes free once a record of need
 * bytes is written, NGX_ABORT when not, NGX_ERROR (logged); *pages is
 * that room and the record's, in pages.
 */
ngx_int_t ngx_acs_room_map(ngx_acs_room_t *room, MDB_txn *rtxn, size_t need,
    ngx_log_t *log, size_t *pages);

/*
 * In a write transaction: NGX_OK when data.mdb is allocated pages past its
 * last page in use, NGX_AGAIN when the disk has no room for them
 * (room->err says why), NGX_ERROR (logged).
 */
ngx_int_t ngx_acs_room_disk(ngx_acs_room_t *room, size_t pages,
    ngx_log_t *log);


#endif /* _NGX_ACS_ROOM_H_INCLUDED_ */
