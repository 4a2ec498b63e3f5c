
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * The limit_req way: a slab pool in a shared zone, an rbtree on the first
 * bytes of a SHA-256 of the pair, an LRU queue whose oldest entries go
 * when they expire or when memory runs out.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <openssl/evp.h>

#include "ngx_acs_crypto.h"
#include "ngx_acs_dedup.h"


typedef struct {
    u_char                      color;
    u_char                      pad[7];
    ngx_queue_t                 queue;
    time_t                      expires;
    uint64_t                    owner;     /* of a pending claim, or 0 */
    u_char                      key[NGX_ACS_DEDUP_KEY_LEN];
} ngx_acs_dedup_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
} ngx_acs_dedup_sh_t;


struct ngx_acs_dedup_s {
    ngx_acs_dedup_sh_t         *sh;
    ngx_slab_pool_t            *shpool;
    ngx_shm_zone_t             *zone;
    time_t                      ttl;
};


static ngx_int_t ngx_acs_dedup_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_acs_dedup_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_acs_dedup_node_t *ngx_acs_dedup_lookup(ngx_acs_dedup_t *d,
    u_char *key, ngx_rbtree_key_t hash);
static void ngx_acs_dedup_expire(ngx_acs_dedup_t *d, ngx_uint_t n);


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

    d->sh = ngx_slab_alloc(d->shpool, sizeof(ngx_acs_dedup_sh_t));
    if (d->sh == NULL) {
        return NGX_ERROR;
    }

    d->shpool->data = d->sh;

    ngx_rbtree_init(&d->sh->rbtree, &d->sh->sentinel, ngx_acs_dedup_insert);
    ngx_queue_init(&d->sh->queue);

    len = sizeof(" in acs_notify_dedup zone") - 1;

    d->shpool->log_ctx = ngx_slab_alloc(d->shpool, len + 1);
    if (d->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(d->shpool->log_ctx, " in acs_notify_dedup zone%Z");
    d->shpool->log_nomem = 0;

    return NGX_OK;
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
    ngx_rbtree_key_t       hash;
    ngx_rbtree_node_t     *node;
    ngx_acs_dedup_node_t  *n;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));
    now = ngx_time();

    ngx_shmtx_lock(&d->shpool->mutex);

    n = ngx_acs_dedup_lookup(d, key, hash);

    if (n && n->expires > now) {

        if (n->owner == 0) {
            rc = NGX_DECLINED;

        } else {
            rc = (n->owner == owner) ? NGX_DONE : NGX_BUSY;
        }

        ngx_shmtx_unlock(&d->shpool->mutex);
        return rc;
    }

    if (n) {
        /* expired: the entry is taken over */
        ngx_queue_remove(&n->queue);
        goto claim;
    }

    ngx_acs_dedup_expire(d, 1);

    node = ngx_slab_alloc_locked(d->shpool, offsetof(ngx_rbtree_node_t, color)
                                            + sizeof(ngx_acs_dedup_node_t));

    if (node == NULL) {
        /* full: forget the oldest pairs, sooner than the TTL */

        ngx_acs_dedup_expire(d, 0);

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
    n->expires = now + NGX_ACS_DEDUP_PENDING;
    ngx_queue_insert_head(&d->sh->queue, &n->queue);

    ngx_shmtx_unlock(&d->shpool->mutex);

    return NGX_OK;
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

    if (n && n->owner == owner) {
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
    ngx_rbtree_node_t     *node;
    ngx_acs_dedup_node_t  *n;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    ngx_shmtx_lock(&d->shpool->mutex);

    n = ngx_acs_dedup_lookup(d, key, hash);

    if (n && n->owner == owner) {
        ngx_queue_remove(&n->queue);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) n - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&d->sh->rbtree, node);
        ngx_slab_free_locked(d->shpool, node);
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
 * n == 0: free the oldest entry whatever its age (memory is short), and
 * then the expired ones; otherwise at most n expired entries.
 */

static void
ngx_acs_dedup_expire(ngx_acs_dedup_t *d, ngx_uint_t n)
{
    time_t                 now;
    ngx_queue_t           *q;
    ngx_rbtree_node_t     *node;
    ngx_acs_dedup_node_t  *dn;

    now = ngx_time();

    while (n < 3) {

        if (ngx_queue_empty(&d->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&d->sh->queue);
        dn = ngx_queue_data(q, ngx_acs_dedup_node_t, queue);

        if (n++ != 0 && dn->expires > now) {
            return;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) dn - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&d->sh->rbtree, node);
        ngx_slab_free_locked(d->shpool, node);
    }
}
