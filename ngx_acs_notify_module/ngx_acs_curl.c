
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * libcurl's multi-socket API on nginx's event loop.  The pitfalls, and
 * where each is handled:
 *
 *  - nginx owns every socket it watches: a socket curl uses is watched
 *    through a duplicate of ours (dup(2) in ngx_acs_curl_adopt), and only
 *    that duplicate is ever in epoll, deleted from it explicitly before we
 *    close it.  libcurl 7.88 closes a socket whose connect failed or timed
 *    out with close(2) itself, bypassing CURLOPT_CLOSESOCKETFUNCTION; with
 *    the socket itself in epoll, its number could be reused (by curl, or
 *    by a client of nginx) while our connection still named it: events
 *    deleted from the wrong socket, a connection slot lost each time.  Now
 *    such a close leaves epoll untouched, and our table entry is found
 *    stale (the number no longer names our socket: fstat) when curl removes
 *    it, reuses the number, or the worker goes idle (ngx_acs_curl_sweep).
 *  - state per socket number, as curl keeps it: curl may reuse a number
 *    it closed itself without telling us, and then expects the interest it
 *    had registered for the number to hold (the entry's "want" carries
 *    over to the new socket).
 *  - the socket curl's threaded resolver waits on while it resolves a host
 *    name (a socketpair it opens and closes itself) is adopted the same
 *    way when the socket callback first names it, and dropped when curl
 *    removes it, just before curl closes it; refusing it would abort the
 *    multi handle.
 *  - level-triggered events (NGX_LEVEL_EVENT in ngx_acs_curl_socket):
 *    curl reads and writes only as much as it wants per call; with
 *    edge-triggered events a partly drained socket would never wake us.
 *  - state per socket, not per transfer (the fd table): HTTP/2 runs many
 *    transfers over one socket.
 *  - curl's timer is deleted, then added (ngx_acs_curl_timer): nginx
 *    keeps an existing timer when a new one is within 300 ms of it
 *    (NGX_TIMER_LAZY_DELAY), which would delay curl's timeouts.
 *  - a dummy connection behind the timer event (ngx_acs_worker_event):
 *    nginx's debug logging of timers reads the fd of ev->data, and
 *    Debian's nginx is a debug build.
 *  - CURLOPT_NOSIGNAL: no SIGALRM in a worker.
 *  - capped connections (CURLMOPT_MAX_HOST_CONNECTIONS), keep-alive (the
 *    multi handle's connection cache, sized by CURLMOPT_MAXCONNECTS so
 *    idle connections survive between bursts), HTTP/2 when asked for and
 *    the peer offers it over ALPN, with multiplexing (CURLPIPE_MULTIPLEX,
 *    CURLOPT_PIPEWAIT).  The caller bounds the transfers in the multi
 *    handle (the push engine's lanes, ngx_acs_engine.c and
 *    ngx_acs_lane.c): libcurl's own work per call grows with them.
 *  - no curl call from inside a curl callback: the callbacks only change
 *    nginx events and timers; completions are collected afterwards by
 *    ngx_acs_curl_collect(), and their handlers may start new requests.
 *  - the timer is non-cancelable while transfers run, so a graceful
 *    shutdown waits for requests in flight, and cancelable when idle.
 *  - clean shutdown in ngx_acs_curl_exit_process().
 *  - libcurl before 8.1.0 resets every HTTP/2 stream closed without a
 *    body, which servers on nghttp2 1.57+ take for a rapid-reset attack:
 *    ngx_acs_h2reset.c drops those resets.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <openssl/ssl.h>

#include "ngx_acs_conf.h"
#include "ngx_acs_stats.h"
#include "ngx_acs_curl.h"


/* a socket curl uses, by its number */

typedef struct ngx_acs_curl_sock_s  ngx_acs_curl_sock_t;

struct ngx_acs_curl_sock_s {
    ngx_socket_t                fd;        /* curl's number */
    ngx_connection_t           *c;         /* on our duplicate */
    dev_t                       dev;       /* of the socket, to tell it */
    ino_t                       ino;       /* from a reused number */
    int                         want;      /* CURL_POLL_*, as curl asked */
    unsigned                    foreign:1; /* opened by curl itself */
    unsigned                    ready:1;   /* connected, TLS done */
    ngx_acs_curl_conns_t       *conns;     /* counted in, or NULL */
    ngx_acs_curl_sock_t        *next;      /* in the free list */
};


typedef struct {
    CURLM                      *multi;
    ngx_log_t                  *log;

    ngx_event_t                 timer;
    ngx_connection_t            timer_conn;

    ngx_acs_curl_sock_t       **fds;       /* by curl's number */
    ngx_uint_t                  nfds;
    ngx_uint_t                  nsocks;    /* in use */
    ngx_acs_curl_sock_t        *free_socks;

    CURL                      **free;      /* easy handles to reuse */
    ngx_uint_t                  nfree;

    ngx_uint_t                  running;   /* easy handles in the multi */
    ngx_msec_t                  swept;
    ngx_event_t                 sweep;     /* a sweep put off */
    ngx_connection_t            sweep_conn;
} ngx_acs_curl_t;


#define NGX_ACS_CURL_FREE_MAX  256


static int ngx_acs_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_acs_curl_timer(CURLM *multi, long timeout_ms, void *userp);
static curl_socket_t ngx_acs_curl_open_socket(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *addr);
static int ngx_acs_curl_close_socket(void *clientp, curl_socket_t s);
#if (LIBCURL_VERSION_NUM >= 0x075000)
static int ngx_acs_curl_prereq(void *clientp, char *primary_ip,
    char *local_ip, int primary_port, int local_port);
#endif
static CURLcode ngx_acs_curl_ssl_ctx(CURL *easy, void *ssl_ctx, void *data);
static size_t ngx_acs_curl_header(char *buf, size_t size, size_t n,
    void *data);
static size_t ngx_acs_curl_write(char *buf, size_t size, size_t n,
    void *data);
static void ngx_acs_curl_event_handler(ngx_event_t *ev);
static void ngx_acs_curl_timer_handler(ngx_event_t *ev);
static void ngx_acs_curl_collect(void);
static ngx_acs_curl_sock_t *ngx_acs_curl_sock(curl_socket_t s);
static ngx_acs_curl_sock_t *ngx_acs_curl_adopt(ngx_socket_t s,
    ngx_uint_t foreign);
static void ngx_acs_curl_watch(ngx_acs_curl_sock_t *sk);
static ngx_uint_t ngx_acs_curl_same(ngx_acs_curl_sock_t *sk);
static void ngx_acs_curl_drop(ngx_acs_curl_sock_t *sk);
static void ngx_acs_curl_sweep(void);
static void ngx_acs_curl_sweep_handler(ngx_event_t *ev);


static ngx_acs_curl_t  ngx_acs_curl;


ngx_int_t
ngx_acs_curl_init_process(ngx_cycle_t *cycle, ngx_uint_t per_host,
    ngx_uint_t connections)
{
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    if (ac->multi) {
        return NGX_OK;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "acs_notify: curl_global_init() failed");
        return NGX_ERROR;
    }

    ac->multi = curl_multi_init();
    if (ac->multi == NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "acs_notify: curl_multi_init() failed");
        return NGX_ERROR;
    }

    ac->log = cycle->log;

    curl_multi_setopt(ac->multi, CURLMOPT_SOCKETFUNCTION,
                      ngx_acs_curl_socket);
    curl_multi_setopt(ac->multi, CURLMOPT_TIMERFUNCTION, ngx_acs_curl_timer);
    curl_multi_setopt(ac->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);

    /*
     * Idle connections kept: by default curl keeps four per easy handle
     * currently added, so as a burst of pushes drains it closes idle hub
     * connections, and the next burst pays new TLS handshakes; keep every
     * connection the hubs may open (their max_connections summed)
     */
    curl_multi_setopt(ac->multi, CURLMOPT_MAXCONNECTS, (long) connections);
    curl_multi_setopt(ac->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                      (long) per_host);

#if (LIBCURL_VERSION_NUM >= 0x074300)
    /* a ceiling: a peer that allows fewer streams gets fewer */
    curl_multi_setopt(ac->multi, CURLMOPT_MAX_CONCURRENT_STREAMS,
                      (long) NGX_ACS_CURL_STREAMS);
#endif

    ngx_acs_worker_event(&ac->timer, ngx_acs_curl_timer_handler,
                         &ac->timer_conn, cycle->log);
    ac->timer.cancelable = 1;

    ngx_acs_worker_event(&ac->sweep, ngx_acs_curl_sweep_handler,
                         &ac->sweep_conn, cycle->log);
    ac->sweep.cancelable = 1;

    return NGX_OK;
}


void
ngx_acs_curl_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t            i;
    ngx_acs_curl_t       *ac = &ngx_acs_curl;
    ngx_acs_curl_sock_t  *sk;

    if (ac->multi == NULL) {
        return;
    }

    if (ac->timer.timer_set) {
        ngx_del_timer(&ac->timer);
    }

    if (ac->sweep.timer_set) {
        ngx_del_timer(&ac->sweep);
    }

    if (ac->running) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "acs_notify: %ui requests to Notification Hubs "
                      "abandoned at exit", ac->running);
    }

    /* closes the connections through ngx_acs_curl_close_socket() */
    curl_multi_cleanup(ac->multi);
    ac->multi = NULL;

    for (i = 0; i < ac->nfree; i++) {
        curl_easy_cleanup(ac->free[i]);
    }

    /* what curl closed without a word, or opened itself */

    for (i = 0; i < ac->nfds; i++) {
        if (ac->fds[i]) {
            ngx_acs_curl_drop(ac->fds[i]);
        }
    }

    while (ac->free_socks) {
        sk = ac->free_socks;
        ac->free_socks = sk->next;
        ngx_free(sk);
    }

    ngx_free(ac->free);
    ngx_free(ac->fds);

    curl_global_cleanup();

    ngx_memzero(ac, sizeof(ngx_acs_curl_t));
}


ngx_int_t
ngx_acs_curl_submit(ngx_acs_http_t *h, ngx_log_t *log)
{
    CURL            *easy;
    CURLMcode        rc;
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    if (ac->multi == NULL) {
        return NGX_ERROR;
    }

    if (ac->nfree) {
        easy = ac->free[--ac->nfree];

    } else {
        easy = curl_easy_init();
        if (easy == NULL) {
            return NGX_ERROR;
        }
    }

    h->status = 0;
    h->result = CURLE_OK;
    h->connected = 0;
    h->opened = 0;
    h->sock = (ngx_socket_t) -1;
    h->version = 0;
    h->rtt = 0;
    h->retry_after = 0;
    h->tracking_id_len = 0;
    h->correlation_id_len = 0;
    h->notification_id_len = 0;
    h->detail_len = 0;
    h->response_len = 0;
    h->error[0] = '\0';
    h->easy = easy;

    curl_easy_setopt(easy, CURLOPT_URL, h->url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, h->body);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) h->body_len);

    if (h->get) {
        /* the method is GET after all, and no body is sent */
        curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }

    if (h->method) {
        /* PUT with the body, DELETE (with get) without */
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, h->method);
    }

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) h->timeout);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                     h->http2 ? CURL_HTTP_VERSION_2TLS
                              : CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, h->pipewait ? 1L : 0L);

    if (h->http2) {
        /* CURLE_NOT_BUILT_IN with a TLS library other than OpenSSL */
        (void) curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION,
                                ngx_acs_curl_ssl_ctx);
    }
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->error);

    /*
     * Receive buffer: libcurl's own 16k.  A smaller one (4k) made libcurl
     * 7.88 write past it when a large body (a key set) came over TLS while
     * HTTP/2 pushes ran: its TLS read was handed the 4,097-byte buffer with
     * a larger length (valgrind: SSL_read writing past the block; workers
     * died of SIGABRT and SIGSEGV, t/427), see docs/dispatch.md, section 7.
     * The send buffer is the smallest curl allows: a payload is at most a
     * few kilobytes.
     */
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 16384L);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, ngx_acs_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_acs_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                     ngx_acs_curl_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, h);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     ngx_acs_curl_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, ac);

#if (LIBCURL_VERSION_NUM >= 0x075000)
    if (h->conns) {
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, ngx_acs_curl_prereq);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, h);
    }
#endif

    if (h->ca_file) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, h->ca_file);
    }

    if (h->connect_to) {
        curl_easy_setopt(easy, CURLOPT_CONNECT_TO, h->connect_to);
    }

    rc = curl_multi_add_handle(ac->multi, easy);

    if (rc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "acs_notify: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(rc));
        curl_easy_cleanup(easy);
        h->easy = NULL;
        return NGX_ERROR;
    }

    ac->running++;

    /* transfers run: a graceful shutdown waits for them */
    ac->timer.cancelable = 0;

    return NGX_OK;
}


/* curl says which events it wants on a socket */

static int
ngx_acs_curl_socket(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    ngx_acs_http_t       *h;
    ngx_acs_curl_sock_t  *sk;

    sk = ngx_acs_curl_sock(s);

    if (what == CURL_POLL_REMOVE) {

        if (sk == NULL) {
            return 0;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_acs_curl.log, 0,
                       "acs_notify curl: socket %d removed%s", s,
                       sk->foreign ? ", curl's own" : "");

        sk->want = 0;
        ngx_acs_curl_watch(sk);

        /*
         * the resolver's socket is closed by curl right after this call;
         * a socket of ours it may have closed already, without our callback
         */

        if (sk->foreign || !ngx_acs_curl_same(sk)) {
            ngx_acs_curl_drop(sk);
        }

        return 0;
    }

    if (sk == NULL) {

        /*
         * a socket curl opened itself, not through our callback: the
         * threaded resolver's socketpair, which a host name resolution
         * waits on; -1 would make curl abort every transfer of the worker
         * for good, 0 lets this one time out if it cannot be watched
         */

        sk = ngx_acs_curl_adopt(s, 1);
        if (sk == NULL) {
            return 0;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, ngx_acs_curl.log, 0,
                   "acs_notify curl: socket %d wants %d", s, what);

    /* the transfer's connection, for ngx_acs_curl_prereq() */

    h = NULL;

    if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &h) == CURLE_OK
        && h != NULL && !sk->foreign)
    {
        h->sock = s;
    }

    sk->want = what;
    ngx_acs_curl_watch(sk);

    return 0;
}


static int
ngx_acs_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    /* delete, then add: a lazy re-add would keep the old expiry */

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                   "acs_notify curl: timer %l ms", timeout_ms);

    if (ac->timer.timer_set) {
        ngx_del_timer(&ac->timer);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(&ac->timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static curl_socket_t
ngx_acs_curl_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *addr)
{
    ngx_acs_http_t  *h = clientp;

    ngx_socket_t          s;
    ngx_acs_curl_t       *ac = &ngx_acs_curl;
    ngx_acs_curl_sock_t  *sk;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }

    s = ngx_socket(addr->family, addr->socktype, addr->protocol);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, ac->log, ngx_socket_errno,
                      "acs_notify: " ngx_socket_n " failed");
        return CURL_SOCKET_BAD;
    }

    sk = ngx_acs_curl_adopt(s, 0);
    if (sk == NULL) {
        ngx_close_socket(s);
        return CURL_SOCKET_BAD;
    }

    /* the connection is the lane's of the transfer that opens it */

    sk->conns = h->conns;
    h->opened = 1;

    if (sk->conns) {
        sk->conns->open++;
        sk->conns->opened++;

        if (sk->conns->asked) {
            sk->conns->asked--;
        }

#if (LIBCURL_VERSION_NUM < 0x075000)
        /* no word of the handshake's end: ready as soon as opened */
        sk->ready = 1;
        sk->conns->ready++;
#endif
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                   "acs_notify curl: socket %d opened", s);

    return s;
}


static int
ngx_acs_curl_close_socket(void *clientp, curl_socket_t s)
{
    ngx_acs_curl_t  *ac = clientp;

    ngx_acs_curl_sock_t  *sk;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                   "acs_notify curl: socket %d closed", s);

    sk = ngx_acs_curl_sock(s);

    if (sk) {
        ngx_acs_curl_drop(sk);
    }

    if (ngx_close_socket(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ac->log, ngx_socket_errno,
                      "acs_notify: " ngx_close_socket_n " failed");
        return 1;
    }

    return 0;
}


#if (LIBCURL_VERSION_NUM >= 0x075000)

/*
 * A transfer is about to send its request: its connection is up, TLS and
 * ALPN done.  An HTTP/2 lane counts only such connections as room for
 * more streams: libcurl, given a transfer while every ready connection is
 * full and another is in its handshake, opens one more (PIPEWAIT waits
 * only while the protocol is not known).
 */

static int
ngx_acs_curl_prereq(void *clientp, char *primary_ip, char *local_ip,
    int primary_port, int local_port)
{
    ngx_acs_http_t  *h = clientp;

    ngx_acs_curl_sock_t  *sk;

    /* the socket curl last named for the transfer: its connection's */

    sk = ngx_acs_curl_sock(h->sock);

    if (sk && !sk->ready && sk->conns) {
        sk->ready = 1;
        sk->conns->ready++;
    }

    return CURL_PREREQFUNC_OK;
}

#endif


/*
 * libcurl asks OpenSSL to free a connection's read buffer each time it is
 * drained, and its write buffer each time it is sent (SSL_MODE_RELEASE_
 * BUFFERS): 16 KB allocated and freed again per read, and a read brings
 * fewer answers the farther the hub is (at 150 ms, glibc's malloc took 9 %
 * of the worker's CPU, most of it there).  An HTTP/2 connection carries
 * many pushes, so it keeps its buffers (about 34 KB a connection); over
 * HTTP/1.1, a connection per push in flight, they are released still.
 */

static CURLcode
ngx_acs_curl_ssl_ctx(CURL *easy, void *ssl_ctx, void *data)
{
    SSL_CTX_clear_mode((SSL_CTX *) ssl_ctx, SSL_MODE_RELEASE_BUFFERS);

    return CURLE_OK;
}


static ngx_acs_curl_sock_t *
ngx_acs_curl_sock(curl_socket_t s)
{
    if (s < 0 || (ngx_uint_t) s >= ngx_acs_curl.nfds) {
        return NULL;
    }

    return ngx_acs_curl.fds[s];
}


/*
 * Watches curl's socket s through a duplicate of ours.  An entry already
 * there is stale: curl closed that socket without our callback and the
 * number is s's now; its interest goes on for s, as curl sees it.
 */

static ngx_acs_curl_sock_t *
ngx_acs_curl_adopt(ngx_socket_t s, ngx_uint_t foreign)
{
    int                    want;
    ngx_uint_t             n;
    ngx_socket_t           dup;
    ngx_file_info_t        fi;
    ngx_connection_t      *c;
    ngx_acs_curl_sock_t   *sk, **fds;
    ngx_acs_curl_t        *ac = &ngx_acs_curl;

    if ((ngx_uint_t) s >= ac->nfds) {
        n = ngx_max((ngx_uint_t) s + 1, 2 * ac->nfds);
        n = ngx_max(n, 64);

        fds = ngx_alloc(n * sizeof(ngx_acs_curl_sock_t *), ac->log);
        if (fds == NULL) {
            return NULL;
        }

        ngx_memzero(fds, n * sizeof(ngx_acs_curl_sock_t *));

        if (ac->fds) {
            ngx_memcpy(fds, ac->fds,
                       ac->nfds * sizeof(ngx_acs_curl_sock_t *));
            ngx_free(ac->fds);
        }

        ac->fds = fds;
        ac->nfds = n;
    }

    want = 0;

    if (ac->fds[s]) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                       "acs_notify curl: socket %d was closed by curl "
                       "itself", s);

        want = ac->fds[s]->want;
        ngx_acs_curl_drop(ac->fds[s]);
    }

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, ac->log, ngx_errno,
                      "acs_notify: fstat(%d) failed", s);
        return NULL;
    }

    dup = fcntl(s, F_DUPFD_CLOEXEC, 0);
    if (dup == -1) {
        ngx_log_error(NGX_LOG_ALERT, ac->log, ngx_errno,
                      "acs_notify: fcntl(%d, F_DUPFD_CLOEXEC) failed", s);
        return NULL;
    }

    sk = ac->free_socks;

    if (sk) {
        ac->free_socks = sk->next;

    } else {
        sk = ngx_alloc(sizeof(ngx_acs_curl_sock_t), ac->log);
        if (sk == NULL) {
            ngx_close_socket(dup);
            return NULL;
        }
    }

    c = ngx_get_connection(dup, ac->log);
    if (c == NULL) {
        ngx_close_socket(dup);
        sk->next = ac->free_socks;
        ac->free_socks = sk;
        return NULL;
    }

    c->data = sk;
    c->read->handler = ngx_acs_curl_event_handler;
    c->write->handler = ngx_acs_curl_event_handler;
    c->read->log = ac->log;
    c->write->log = ac->log;
    c->log = ac->log;

    sk->fd = s;
    sk->c = c;
    sk->dev = fi.st_dev;
    sk->ino = fi.st_ino;
    sk->want = want;
    sk->foreign = foreign;
    sk->ready = 0;
    sk->conns = NULL;
    sk->next = NULL;

    ac->fds[s] = sk;
    ac->nsocks++;
    ngx_acs_stats_connections(1);

    if (want) {
        ngx_acs_curl_watch(sk);
    }

    return sk;
}


/*
 * The events of our duplicate as curl wants them.  A failure is logged by
 * nginx; the transfer then ends at its timeout, and is retried.
 *
 * Reading is left watched when curl stops wanting it: a keep-alive
 * connection goes idle between two transfers and is read again by the
 * next, and an idle socket is seldom readable, so two epoll_ctl(2) calls a
 * transfer are saved; the event handler stops watching a socket that
 * turns readable unwanted.  Writing, nearly always possible, is not.
 */

static void
ngx_acs_curl_watch(ngx_acs_curl_sock_t *sk)
{
    ngx_event_t  *rev, *wev;

    rev = sk->c->read;
    wev = sk->c->write;

    if ((sk->want & CURL_POLL_IN) && !rev->active) {
        (void) ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }

    if ((sk->want & CURL_POLL_OUT) && !wev->active) {
        (void) ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);

    } else if (!(sk->want & CURL_POLL_OUT) && wev->active) {
        (void) ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }
}


/* curl's number still names our socket */

static ngx_uint_t
ngx_acs_curl_same(ngx_acs_curl_sock_t *sk)
{
    ngx_file_info_t  fi;

    if (ngx_fd_info(sk->fd, &fi) == NGX_FILE_ERROR) {
        return 0;
    }

    return fi.st_ino == sk->ino && fi.st_dev == sk->dev;
}


/*
 * Our duplicate goes: out of epoll first, explicitly (curl's socket may
 * still be open on the same file, so closing ours would not remove it),
 * then closed.  curl's own socket is curl's business.
 */

static void
ngx_acs_curl_drop(ngx_acs_curl_sock_t *sk)
{
    ngx_connection_t  *c;
    ngx_acs_curl_t    *ac = &ngx_acs_curl;

    c = sk->c;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (ngx_close_socket(c->fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ac->log, ngx_socket_errno,
                      "acs_notify: " ngx_close_socket_n " failed");
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    ac->fds[sk->fd] = NULL;
    ac->nsocks--;
    ngx_acs_stats_connections(-1);

    if (sk->conns) {
        sk->conns->open--;

        if (sk->ready) {
            sk->conns->ready--;
        }

        sk->conns = NULL;
    }

    sk->c = NULL;
    sk->next = ac->free_socks;
    ac->free_socks = sk;
}


/*
 * When no transfer runs, the sockets curl keeps are idle connections (and
 * none of the resolver's): an entry whose number no longer names our
 * socket was closed by curl without a word.
 */

static void
ngx_acs_curl_sweep(void)
{
    ngx_uint_t            i;
    ngx_acs_curl_t       *ac = &ngx_acs_curl;
    ngx_acs_curl_sock_t  *sk;

    for (i = 0; i < ac->nfds && ac->nsocks; i++) {
        sk = ac->fds[i];

        if (sk && (sk->foreign || !ngx_acs_curl_same(sk))) {
            ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                           "acs_notify curl: socket %d gone unsaid", sk->fd);
            ngx_acs_curl_drop(sk);
        }
    }
}


static void
ngx_acs_curl_sweep_handler(ngx_event_t *ev)
{
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    if (ac->running == 0) {
        ac->swept = ngx_current_msec;
        ngx_acs_curl_sweep();
    }
}


/*
 * Retry-After, and the ids the answer gives (Notification Hubs: TrackingId,
 * x-ms-correlation-request-id, the notification id at the end of the
 * Location path of a 201 on the Standard tier), from its headers
 */

static size_t
ngx_acs_curl_header(char *buf, size_t size, size_t n, void *data)
{
    ngx_acs_http_t  *h = data;

    u_char     *p, *q, *last;
    size_t      len;
    time_t      t;
    ngx_int_t   secs;

    len = size * n;
    p = (u_char *) buf;
    last = p + len;

    while (last > p && (last[-1] == '\r' || last[-1] == '\n'
                        || last[-1] == ' '))
    {
        last--;
    }

    if (len > 12 && ngx_strncasecmp(p, (u_char *) "Retry-After:", 12) == 0) {
        for (p += 12; p < last && *p == ' '; p++) { /* void */ }

        /*
         * Seconds, or an HTTP date; anything longer than a day (digits too
         * many for ngx_atoi included) is a day: no overflow in ms later
         */

        for (q = p; q < last && *q >= '0' && *q <= '9'; q++) { /* void */ }

        if (q == last && q > p) {
            secs = (last - p > 9) ? NGX_ACS_CURL_RETRY_MAX
                                  : ngx_atoi(p, last - p);

        } else {
            t = ngx_parse_http_time(p, last - p);
            secs = (t == NGX_ERROR) ? 0 : ngx_max(t - ngx_time(), 0);
        }

        h->retry_after = ngx_min(secs, NGX_ACS_CURL_RETRY_MAX);

    } else if (len > 11
               && ngx_strncasecmp(p, (u_char *) "TrackingId:", 11) == 0)
    {
        for (p += 11; p < last && *p == ' '; p++) { /* void */ }

        h->tracking_id_len = ngx_min((size_t) (last - p),
                                     sizeof(h->tracking_id));
        ngx_memcpy(h->tracking_id, p, h->tracking_id_len);

    } else if (len > 28
               && ngx_strncasecmp(p, (u_char *) "x-ms-correlation-request-id:",
                                  28)
                  == 0)
    {
        for (p += 28; p < last && *p == ' '; p++) { /* void */ }

        h->correlation_id_len = ngx_min((size_t) (last - p),
                                        sizeof(h->correlation_id));
        ngx_memcpy(h->correlation_id, p, h->correlation_id_len);

    } else if (len > 9
               && ngx_strncasecmp(p, (u_char *) "Location:", 9) == 0)
    {
        /* https://{namespace}/{hub}/messages/{id}?api-version=...: the id */

        q = ngx_strlchr(p, last, '?');
        last = q ? q : last;

        for (q = last; q > p + 9 && q[-1] != '/'; q--) { /* void */ }

        h->notification_id_len = ngx_min((size_t) (last - q),
                                         sizeof(h->notification_id));
        ngx_memcpy(h->notification_id, q, h->notification_id_len);
    }

    return len;
}



/*
 * The body into the caller's buffer, a body longer than it failing the
 * transfer (CURLE_WRITE_ERROR); without one, the start of an error body,
 * for the log, the rest dropped.
 */

static size_t
ngx_acs_curl_write(char *buf, size_t size, size_t n, void *data)
{
    ngx_acs_http_t  *h = data;

    size_t  len;

    if (h->response) {
        if (size * n > h->response_size - h->response_len) {
            return 0;
        }

        ngx_memcpy(h->response + h->response_len, buf, size * n);
        h->response_len += size * n;

        return size * n;
    }

    len = ngx_min(size * n, NGX_ACS_CURL_DETAIL_MAX - h->detail_len);
    ngx_memcpy(h->detail + h->detail_len, buf, len);
    h->detail_len += len;

    return size * n;
}


static void
ngx_acs_curl_event_handler(ngx_event_t *ev)
{
    int                   running;
    ngx_connection_t     *c;
    ngx_acs_curl_sock_t  *sk;

    c = ev->data;
    sk = c->data;

    if (!ev->write && !(sk->want & CURL_POLL_IN)) {

        /*
         * an idle connection closed by its peer (or data curl waits not
         * for): curl finds out when it takes the connection again
         */

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, ngx_acs_curl.log, 0,
                       "acs_notify curl: socket %d readable, unwatched",
                       sk->fd);

        (void) ngx_del_event(ev, NGX_READ_EVENT, 0);
        return;
    }

    curl_multi_socket_action(ngx_acs_curl.multi, sk->fd,
                             ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN,
                             &running);

    /* c and sk may be gone by now: curl may have closed the socket */

    ngx_acs_curl_collect();
}


static void
ngx_acs_curl_timer_handler(ngx_event_t *ev)
{
    int  running;

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, ev->log, 0,
                   "acs_notify curl: timer expired");

    curl_multi_socket_action(ngx_acs_curl.multi, CURL_SOCKET_TIMEOUT, 0,
                             &running);

    ngx_acs_curl_collect();
}


static void
ngx_acs_curl_collect(void)
{
    int              left;
    long             version;
    curl_off_t       connected, total;
    CURL            *easy;
    CURLMsg         *msg;
    ngx_acs_http_t  *h;
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    while ((msg = curl_multi_info_read(ac->multi, &left)) != NULL) {

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        h = NULL;

        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &h);
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &h->status);
        h->result = msg->data.result;

        /*
         * the request was about to go out: the connection was up, new or
         * reused (libcurl 7.88 reports no TLS handshake time for a reused
         * one); at least 1 us when it happened at all
         */

        connected = 0;
        curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &connected);
        h->connected = (connected > 0);

        /* the hub's round trip: no queueing, connecting or TLS in it */

        total = 0;
        curl_easy_getinfo(easy, CURLINFO_TOTAL_TIME_T, &total);
        h->rtt = (h->connected && total > connected)
                 ? (uint64_t) (total - connected) : 0;

        version = 0;
        curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version);
        h->version = (version == CURL_HTTP_VERSION_2_0) ? 2
                     : (version ? 1 : 0);

        curl_multi_remove_handle(ac->multi, easy);
        ac->running--;

        ngx_log_debug4(NGX_LOG_DEBUG_EVENT, ac->log, 0,
                       "acs_notify curl: transfer done: HTTP %l, curl %d%s, "
                       "%ui left", h->status, (int) h->result,
                       h->connected ? "" : ", not connected", ac->running);

        h->easy = NULL;

        if (ac->nfree < NGX_ACS_CURL_FREE_MAX) {
            if (ac->free == NULL) {
                ac->free = ngx_alloc(NGX_ACS_CURL_FREE_MAX * sizeof(CURL *),
                                     ac->log);
            }

            if (ac->free) {
                curl_easy_reset(easy);
                ac->free[ac->nfree++] = easy;
                easy = NULL;
            }
        }

        if (easy) {
            curl_easy_cleanup(easy);
        }

        /* the handler may start new requests: we are outside curl now */
        h->handler(h);
    }

    if (ac->running == 0) {
        ac->timer.cancelable = 1;

        if (ngx_current_msec - ac->swept >= 1000) {
            ac->swept = ngx_current_msec;
            ngx_acs_curl_sweep();

        } else if (!ac->sweep.timer_set) {
            /* at most a sweep a second, but one after the last transfer */
            ngx_add_timer(&ac->sweep, 1000 - (ngx_current_msec - ac->swept));
        }
    }
}


size_t
ngx_acs_curl_headers_size(ngx_acs_header_t *h, ngx_uint_t n)
{
    size_t      size;
    ngx_uint_t  i;

    size = 0;

    for (i = 0; i < n; i++) {
        size += h[i].name.len + sizeof(": ") - 1 + h[i].value.len + 1;
    }

    return size;
}


struct curl_slist *
ngx_acs_curl_headers(ngx_acs_header_t *h, ngx_uint_t n,
    struct curl_slist *lines, u_char *buf)
{
    u_char      *p;
    ngx_uint_t   i;

    p = buf;

    for (i = 0; i < n; i++) {
        lines[i].data = (char *) p;
        lines[i].next = (i + 1 < n) ? &lines[i + 1] : NULL;

        p = ngx_cpymem(p, h[i].name.data, h[i].name.len);
        *p++ = ':';

        if (h[i].value.len) {
            *p++ = ' ';
            p = ngx_cpymem(p, h[i].value.data, h[i].value.len);
        }

        *p++ = '\0';
    }

    return n ? lines : NULL;
}
