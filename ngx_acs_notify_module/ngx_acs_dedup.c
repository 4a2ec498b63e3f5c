
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The limit_req way: a slab pool in a shared zone, an rbtree on the first
 * bytes of a SHA-256 of the pair, an LRU queue whose oldest entries go
 * when they expire or when memory runs out.
 *
 * Claims (pushes being made) wait in a queue of their own, oldest last,
 * and name their worker by its slot in nginx's process table and the
 * slot's generation in the zone.  A worker that starts takes its slot's
 * next generation: the master respawns a dead worker in the slot it had,
 * so its replacement is what tells the zone that it is gone, even when
 * the new process has the dead one's pid.  A claim is its worker's while
 * the slot's generation is the claim's and the slot's process is not
 * known to be gone:
 *
 *  - a worker that starts walks the claims once (they are at most the
 *    pushes queued in all workers, never the zone) and releases those of
 *    older generations and of slots whose process no longer exists
 *    (kill(pid, 0): ESRCH), such as an old worker of a reload that died
 *    while finishing: no one takes its slot;
 *  - a lookup that meets another worker's claim checks its slot the same
 *    way, one kill() per such meeting, and takes a dead worker's claim
 *    over;
 *  - a worker that ends marks its slot gone.
 *
 * Old workers of a reload keep their slots while they finish their
 * pushes, so their claims hold.  What cannot be told (a pid reused by
 * another process before its slot had a new worker) waits for the
 * claim's NGX_ACS_DEDUP_PENDING.  A zone is that of one master: a
 * restart or a binary upgrade makes a new one.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_dedup.h"


/* a slot of nginx's process table, as the zone knows it */

typedef struct {
    ngx_pid_t                   pid;       /* 0: gone */
    uint32_t                    gen;       /* processes it had */
} ngx_acs_dedup_worker_t;


typedef struct {
    u_char                      color;
    u_char                      pad;
    uint16_t                    slot;      /* of a claim's worker */
    uint32_t                    gen;       /* of its slot, 0: unknown */
    ngx_queue_t                 queue;
    time_t                      expires;
    uint64_t                    owner;     /* of a pending claim, or 0 */
    u_char                      key[NGX_ACS_DEDUP_KEY_LEN];
} ngx_acs_dedup_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;     /* pushes sent, LRU */
    ngx_queue_t                 claims;    /* pending, oldest last */
    ngx_acs_dedup_worker_t      workers[NGX_MAX_PROCESSES];
} ngx_acs_dedup_sh_t;


struct ngx_acs_dedup_s {
    ngx_acs_dedup_sh_t         *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *zone;
    time_t                      ttl;
    ngx_uint_t                  slot;      /* this worker's */
    uint32_t                    gen;       /* 0: not started */
};


static ngx_int_t ngx_acs_dedup_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_acs_dedup_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_acs_dedup_node_t *ngx_acs_dedup_lookup(ngx_acs_dedup_t *d,
    u_char *key, ngx_rbtree_key_t hash);
static ngx_uint_t ngx_acs_dedup_alive(ngx_acs_dedup_t *d,
    ngx_acs_dedup_node_t *n, ngx_uint_t probe);
static void ngx_acs_dedup_expire(ngx_acs_dedup_t *d, ngx_queue_t *queue,
    ngx_uint_t n);
static void ngx_acs_dedup_free(ngx_acs_dedup_t *d, ngx_acs_dedup_node_t *n);


static ngx_str_t  ngx_acs_dedup_zone_name = ngx_string("acs_notify_dedup");


ngx_acs_dedup_t *
ngx_acs_dedup_create(ngx_conf_t *cf, size_t size, time_t ttl)
{
    ngx_acs_dedup_t  *d;

    d = ngx_pcalloc(cf->pool, sizeof(ngx_acs_dedup_t));
    if (d == NULL) {
        return NULL;
    }

    d->ttl = ttl;

    d->zone = ngx_shared_memory_add(cf, &ngx_acs_dedup_zone_name, size,
                                    &ngx_acs_dedup_zone_name);
    if (d->zone == NULL) {
        return NULL;
    }

    d->zone->init = ngx_acs_dedup_init_zone;
    d->zone->data = d;

    return d;
}


static ngx_int_t
ngx_acs_dedup_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_acs_dedup_t  *od = data;

    size_t            len;
    ngx_acs_dedup_t  *d;

    d = shm_zone->data;

    if (od) {
        /* a reload: keep what the old cycle remembered */
        d->sh = od->sh;
        d->shpool = od->shpool;
        return NGX_OK;
    }

    d->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        d->sh = d->shpool->data;
        return NGX_OK;
    }

    /* the slots zeroed: no process, generation 0 */

    d->sh = ngx_slab_calloc(d->shpool, sizeof(ngx_acs_dedup_sh_t));
    if (d->sh == NULL) {
        return NGX_ERROR;
    }

    d->shpool->data = d->sh;

    ngx_rbtree_init(&d->sh->rbtree, &d->sh->sentinel, ngx_acs_dedup_insert);
    ngx_queue_init(&d->sh->queue);
    ngx_queue_init(&d->sh->claims);

    len = sizeof(" in acs_notify_dedup zone") - 1;

    d->shpool->log_ctx = ngx_slab_alloc(d->shpool, len + 1);
    if (d->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(d->shpool->log_ctx, " in acs_notify_dedup zone%Z");
    d->shpool->log_nomem = 0;

    return NGX_OK;
}


void
ngx_acs_dedup_init_process(ngx_acs_dedup_t *d, ngx_log_t *log)
{
    ngx_uint_t               i, released;
    ngx_queue_t             *q, *next;
    ngx_acs_dedup_node_t    *n;
    ngx_acs_dedup_worker_t  *w;

    if (ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES) {
        return;
    }

    released = 0;
    w = d->sh->workers;

    ngx_shmtx_lock(&d->shpool->mutex);

    /* the slot's previous process, if any, is gone: it had the slot */

    d->slot = ngx_process_slot;

    if (++w[d->slot].gen == 0) {
        w[d->slot].gen = 1;
    }

    w[d->slot].pid = ngx_pid;
    d->gen = w[d->slot].gen;

    /* processes that ended or died and whose slot no one took */

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        if (i != d->slot && w[i].pid != 0 && kill(w[i].pid, 0) == -1
            && ngx_errno == NGX_ESRCH)
        {
            w[i].pid = 0;
        }
    }

    for (q = ngx_queue_head(&d->sh->claims);
         q != ngx_queue_sentinel(&d->sh->claims);
         q = next)
    {
        next = ngx_queue_next(q);
        n = ngx_queue_data(q, ngx_acs_dedup_node_t, queue);

        if (!ngx_acs_dedup_alive(d, n, 0)) {
            ngx_acs_dedup_free(d, n);
            released++;
        }
    }

    ngx_shmtx_unlock(&d->shpool->mutex);

    ngx_log_debug2(NGX_LOG_DEBUG_CORE, log, 0,
                   "acs_notify_dedup: worker in slot %ui, generation %uD",
                   d->slot, d->gen);

    if (released) {
        ngx_log_error(NGX_LOG_NOTICE, log, 0,
                      "acs_notify_dedup: %ui claims of pushes by worker "
                      "processes that are gone released", released);
    }
}


void
ngx_acs_dedup_exit_process(ngx_acs_dedup_t *d)
{
    ngx_acs_dedup_worker_t  *w;

    if (d->gen == 0) {
        return;
    }

    ngx_shmtx_lock(&d->shpool->mutex);

    w = &d->sh->workers[d->slot];

    if (w->gen == d->gen) {
        w->pid = 0;
    }

    ngx_shmtx_unlock(&d->shpool->mutex);
}


/* SHA-256 of the NUL-separated parts; the first 16 bytes are the key */

void
ngx_acs_dedup_key(u_char *key, ngx_str_t *event_id, ngx_str_t *type,
    ngx_str_t *subject, ngx_str_t *raw_id, ngx_str_t *handle)
{
    u_char        digest[EVP_MAX_MD_SIZE];
    ngx_uint_t    i;
    EVP_MD_CTX   *md, *own;
    unsigned int  len;
    ngx_str_t    *parts[5];

    /* a key per push: the worker's context, no allocation */

    parts[0] = event_id;
    parts[1] = type;
    parts[2] = subject;
    parts[3] = raw_id;
    parts[4] = handle;

    ngx_memzero(digest, sizeof(digest));

    own = NULL;
    md = ngx_acs_sha256_ctx();

    if (md == NULL) {
        md = own = EVP_MD_CTX_new();
    }

    if (md && EVP_DigestInit_ex(md, ngx_acs_sha256(), NULL) == 1) {
        for (i = 0; i < 5; i++) {
            EVP_DigestUpdate(md, parts[i]->data, parts[i]->len);
            EVP_DigestUpdate(md, "", 1);
        }

        EVP_DigestFinal_ex(md, digest, &len);
    }

    EVP_MD_CTX_free(own);

    ngx_memcpy(key, digest, NGX_ACS_DEDUP_KEY_LEN);
}


ngx_int_t
ngx_acs_dedup_claim(ngx_acs_dedup_t *d, u_char *key, uint64_t owner,
    ngx_log_t *log)
{
    time_t                 now;
    ngx_int_t              rc;
    ngx_uint_t             gone;
    ngx_rbtree_key_t       hash;
    ngx_rbtree_node_t     *node;
    ngx_acs_dedup_node_t  *n;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));
    now = ngx_time();
    gone = 0;

    ngx_shmtx_lock(&d->shpool->mutex);

    n = ngx_acs_dedup_lookup(d, key, hash);

    if (n && n->expires > now) {

        if (n->owner == 0) {
            rc = NGX_DECLINED;
            goto done;
        }

        if (n->owner == owner && n->slot == d->slot && n->gen == d->gen) {
            rc = NGX_DONE;
            goto done;
        }

        if (ngx_acs_dedup_alive(d, n, 1)) {
            rc = NGX_BUSY;
            goto done;
        }

        /* the claim of a worker that is gone: this push is made again */
        gone = 1;
    }

    if (n) {
        /* expired, or its worker gone: the entry is taken over */
        ngx_queue_remove(&n->queue);
        goto claim;
    }

    ngx_acs_dedup_expire(d, &d->sh->queue, 1);
    ngx_acs_dedup_expire(d, &d->sh->claims, 1);

    node = ngx_slab_alloc_locked(d->shpool, offsetof(ngx_rbtree_node_t, color)
                                            + sizeof(ngx_acs_dedup_node_t));

    if (node == NULL) {
        /* full: forget the oldest pairs sent, sooner than the TTL */

        ngx_acs_dedup_expire(d, &d->sh->queue, 0);

        node = ngx_slab_alloc_locked(d->shpool,
                                     offsetof(ngx_rbtree_node_t, color)
                                     + sizeof(ngx_acs_dedup_node_t));
        if (node == NULL) {
            ngx_shmtx_unlock(&d->shpool->mutex);
            ngx_log_error(NGX_LOG_CRIT, log, 0,
                          "acs_notify: could not allocate a node in "
                          "acs_notify_dedup zone");
            return NGX_OK;
        }
    }

    node->key = hash;
    n = (ngx_acs_dedup_node_t *) &node->color;
    ngx_memcpy(n->key, key, NGX_ACS_DEDUP_KEY_LEN);

    ngx_rbtree_insert(&d->sh->rbtree, node);

claim:

    n->owner = owner;
    n->slot = (uint16_t) d->slot;
    n->gen = d->gen;
    n->expires = now + NGX_ACS_DEDUP_PENDING;
    ngx_queue_insert_head(&d->sh->claims, &n->queue);

    ngx_shmtx_unlock(&d->shpool->mutex);

    if (gone) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "acs_notify_dedup: a push claimed by a worker process "
                      "that is gone is made again");
    }

    return NGX_OK;

done:

    ngx_shmtx_unlock(&d->shpool->mutex);

    return rc;
}


void
ngx_acs_dedup_confirm(ngx_acs_dedup_t *d, u_char *key, uint64_t owner)
{
    ngx_rbtree_key_t       hash;
    ngx_acs_dedup_node_t  *n;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    ngx_shmtx_lock(&d->shpool->mutex);

    n = ngx_acs_dedup_lookup(d, key, hash);

    /* a claim that could not be remembered, or was forgotten: no entry */

    if (n && n->owner == owner && n->slot == d->slot && n->gen == d->gen) {
        n->owner = 0;
        n->expires = ngx_time() + d->ttl;
        ngx_queue_remove(&n->queue);
        ngx_queue_insert_head(&d->sh->queue, &n->queue);
    }

    ngx_shmtx_unlock(&d->shpool->mutex);
}


void
ngx_acs_dedup_release(ngx_acs_dedup_t *d, u_char *key, uint64_t owner)
{
    ngx_rbtree_key_t       hash;
    ngx_acs_dedup_node_t  *n;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    ngx_shmtx_lock(&d->shpool->mutex);

    n = ngx_acs_dedup_lookup(d, key, hash);

    if (n && n->owner == owner && n->slot == d->slot && n->gen == d->gen) {
        ngx_acs_dedup_free(d, n);
    }

    ngx_shmtx_unlock(&d->shpool->mutex);
}


/* the entry of the key, expired or not: one per key */

static ngx_acs_dedup_node_t *
ngx_acs_dedup_lookup(ngx_acs_dedup_t *d, u_char *key, ngx_rbtree_key_t hash)
{
    ngx_int_t              rc;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_acs_dedup_node_t  *n;

    node = d->sh->rbtree.root;
    sentinel = d->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        n = (ngx_acs_dedup_node_t *) &node->color;

        rc = ngx_memcmp(key, n->key, NGX_ACS_DEDUP_KEY_LEN);

        if (rc == 0) {
            return n;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_acs_dedup_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t     **p;
    ngx_acs_dedup_node_t   *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            n = (ngx_acs_dedup_node_t *) &node->color;
            t = (ngx_acs_dedup_node_t *) &temp->color;

            p = (ngx_memcmp(n->key, t->key, NGX_ACS_DEDUP_KEY_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * Whether the worker of a pending claim may still be making its push: the
 * claim's slot has had no other process since, and that process is not
 * known to be gone; probe: ask the system when the zone does not know.
 */

static ngx_uint_t
ngx_acs_dedup_alive(ngx_acs_dedup_t *d, ngx_acs_dedup_node_t *n,
    ngx_uint_t probe)
{
    ngx_acs_dedup_worker_t  *w;

    if (n->gen == 0 || n->slot >= NGX_MAX_PROCESSES
        || (n->slot == d->slot && n->gen == d->gen))
    {
        return 1;
    }

    w = &d->sh->workers[n->slot];

    if (w->gen != n->gen || w->pid == 0) {
        return 0;
    }

    /* a zombie is not ESRCH: its master respawns it in this slot soon */

    if (probe && kill(w->pid, 0) == -1 && ngx_errno == NGX_ESRCH) {
        w->pid = 0;
        return 0;
    }

    return 1;
}


/*
 * From the oldest end of a queue: n == 0, free the oldest entry whatever
 * its age (memory is short), and then the expired ones; otherwise at most
 * n expired entries.
 */

static void
ngx_acs_dedup_expire(ngx_acs_dedup_t *d, ngx_queue_t *queue, ngx_uint_t n)
{
    time_t                 now;
    ngx_queue_t           *q;
    ngx_acs_dedup_node_t  *dn;

    now = ngx_time();

    while (n < 3) {

        if (ngx_queue_empty(queue)) {
            return;
        }

        q = ngx_queue_last(queue);
        dn = ngx_queue_data(q, ngx_acs_dedup_node_t, queue);

        if (n++ != 0 && dn->expires > now) {
            return;
        }

        ngx_acs_dedup_free(d, dn);
    }
}


static void
ngx_acs_dedup_free(ngx_acs_dedup_t *d, ngx_acs_dedup_node_t *n)
{
    ngx_rbtree_node_t  *node;

    ngx_queue_remove(&n->queue);

    node = (ngx_rbtree_node_t *)
               ((u_char *) n - offsetof(ngx_rbtree_node_t, color));

    ngx_rbtree_delete(&d->sh->rbtree, node);
    ngx_slab_free_locked(d->shpool, node);
}
