
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * libcurl's multi-socket API on nginx's event loop.  The pitfalls, and
 * where each is handled:
 *
 *  - nginx owns every socket: curl opens and closes them through our
 *    callbacks (ngx_acs_curl_open_socket, ngx_acs_curl_close_socket), so
 *    each fd has an nginx connection, and its events are deleted before
 *    the fd is closed: no closed fd is ever left in epoll, and a reused
 *    fd starts clean (ngx_get_connection flips the instance bit).
 *  - but not the socket curl's threaded resolver waits on while it
 *    resolves a host name (a socketpair it opens and closes itself): it
 *    gets a connection of its own when the socket callback first names
 *    it, dropped when curl removes it, just before curl closes it
 *    (ngx_acs_curl_socket); refusing it would abort the multi handle.
 *  - level-triggered events (NGX_LEVEL_EVENT in ngx_acs_curl_socket):
 *    curl reads and writes only as much as it wants per call; with
 *    edge-triggered events a partly drained socket would never wake us.
 *  - state per socket, not per transfer (the fd table): HTTP/2 runs many
 *    transfers over one socket.
 *  - curl's timer is deleted, then added (ngx_acs_curl_timer): nginx
 *    keeps an existing timer when a new one is within 300 ms of it
 *    (NGX_TIMER_LAZY_DELAY), which would delay curl's timeouts.
 *  - a dummy connection behind the timer event: nginx's debug logging of
 *    timers reads the fd of ev->data, and Debian's nginx is a debug build.
 *  - CURLOPT_NOSIGNAL: no SIGALRM in a worker.
 *  - capped connections (CURLMOPT_MAX_HOST_CONNECTIONS), keep-alive (the
 *    multi handle's connection cache, sized by CURLMOPT_MAXCONNECTS so
 *    idle connections survive between bursts), HTTP/2 when the peer
 *    offers it over ALPN, with multiplexing (CURLPIPE_MULTIPLEX,
 *    CURLOPT_PIPEWAIT).
 *  - no curl call from inside a curl callback: the callbacks only change
 *    nginx events and timers; completions are collected afterwards by
 *    ngx_acs_curl_collect(), and their handlers may start new requests.
 *  - the timer is non-cancelable while transfers run, so a graceful
 *    shutdown waits for requests in flight, and cancelable when idle.
 *  - clean shutdown in ngx_acs_curl_exit_process().
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_acs_curl.h"


typedef struct {
    CURLM                      *multi;
    ngx_log_t                  *log;

    ngx_event_t                 timer;
    ngx_connection_t            timer_conn;

    ngx_connection_t          **fds;       /* our sockets, by fd */
    ngx_uint_t                  nfds;

    CURL                      **free;      /* easy handles to reuse */
    ngx_uint_t                  nfree;

    ngx_uint_t                  running;   /* easy handles in the multi */
    ngx_uint_t                  max_connections;
} ngx_acs_curl_t;


#define NGX_ACS_CURL_FREE_MAX  256


static int ngx_acs_curl_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int ngx_acs_curl_timer(CURLM *multi, long timeout_ms, void *userp);
static curl_socket_t ngx_acs_curl_open_socket(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *addr);
static int ngx_acs_curl_close_socket(void *clientp, curl_socket_t s);
static size_t ngx_acs_curl_header(char *buf, size_t size, size_t n,
    void *data);
static size_t ngx_acs_curl_write(char *buf, size_t size, size_t n,
    void *data);
static void ngx_acs_curl_event_handler(ngx_event_t *ev);
static void ngx_acs_curl_timer_handler(ngx_event_t *ev);
static void ngx_acs_curl_collect(void);
static ngx_connection_t *ngx_acs_curl_conn(curl_socket_t s);
static ngx_connection_t *ngx_acs_curl_track(ngx_socket_t s);


/* marks, in c->data, a socket curl opened itself (see ngx_acs_curl_socket) */
static u_char  ngx_acs_curl_foreign;


static ngx_acs_curl_t  ngx_acs_curl;


ngx_int_t
ngx_acs_curl_init_process(ngx_cycle_t *cycle, ngx_uint_t connections)
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

    ac->timer_conn.fd = (ngx_socket_t) -1;
    ac->timer.data = &ac->timer_conn;
    ac->timer.handler = ngx_acs_curl_timer_handler;
    ac->timer.log = cycle->log;
    ac->timer.cancelable = 1;

    return NGX_OK;
}


void
ngx_acs_curl_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t       i;
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    if (ac->multi == NULL) {
        return;
    }

    if (ac->timer.timer_set) {
        ngx_del_timer(&ac->timer);
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

    ngx_free(ac->free);
    ngx_free(ac->fds);

    curl_global_cleanup();

    ngx_memzero(ac, sizeof(ngx_acs_curl_t));
}


ngx_uint_t
ngx_acs_curl_running(void)
{
    return ngx_acs_curl.running;
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

    if (h->max_connections > ac->max_connections) {
        ac->max_connections = h->max_connections;
        curl_multi_setopt(ac->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long) ac->max_connections);
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
    h->retry_after = 0;
    h->tracking_id_len = 0;
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

    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) h->timeout);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->error);

    /*
     * Memory per push in flight: NH answers in a few hundred bytes and a
     * payload is at most a few kilobytes, so the smallest buffers curl
     * allows (4k to read instead of 16k, 16k to send instead of 64k)
     */
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, 4096L);
    curl_easy_setopt(easy, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, ngx_acs_curl_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, ngx_acs_curl_write);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                     ngx_acs_curl_open_socket);
    curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, ac);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                     ngx_acs_curl_close_socket);
    curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, ac);

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
    ngx_event_t       *rev, *wev;
    ngx_connection_t  *c;

    c = ngx_acs_curl_conn(s);

    if (c == NULL) {

        if (what == CURL_POLL_REMOVE) {
            return 0;
        }

        /*
         * a socket curl opened itself, not through our callback: the
         * threaded resolver's socketpair, which a host name resolution
         * waits on; watch it like ours until curl removes it
         */

        c = ngx_acs_curl_track(s);
        if (c == NULL) {
            /* the transfer ends at its timeout, and is retried */
            return 0;
        }

        c->data = &ngx_acs_curl_foreign;
    }

    rev = c->read;
    wev = c->write;

    if (what == CURL_POLL_REMOVE) {
        if (rev->active) {
            ngx_del_event(rev, NGX_READ_EVENT, 0);
        }

        if (wev->active) {
            ngx_del_event(wev, NGX_WRITE_EVENT, 0);
        }

        if (c->data == &ngx_acs_curl_foreign) {

            /* curl closes it itself, right after this call */

            if (rev->posted) {
                ngx_delete_posted_event(rev);
            }

            if (wev->posted) {
                ngx_delete_posted_event(wev);
            }

            ngx_acs_curl.fds[s] = NULL;
            ngx_free_connection(c);
            c->fd = (ngx_socket_t) -1;
        }

        return 0;
    }

    /*
     * a failure is logged by nginx; -1 would make curl abort every
     * transfer of the worker for good, 0 lets this one time out
     */

    if ((what & CURL_POLL_IN) && !rev->active) {
        (void) ngx_add_event(rev, NGX_READ_EVENT, NGX_LEVEL_EVENT);

    } else if (!(what & CURL_POLL_IN) && rev->active) {
        (void) ngx_del_event(rev, NGX_READ_EVENT, 0);
    }

    if ((what & CURL_POLL_OUT) && !wev->active) {
        (void) ngx_add_event(wev, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);

    } else if (!(what & CURL_POLL_OUT) && wev->active) {
        (void) ngx_del_event(wev, NGX_WRITE_EVENT, 0);
    }

    return 0;
}


static int
ngx_acs_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_acs_curl_t  *ac = &ngx_acs_curl;

    /* delete, then add: a lazy re-add would keep the old expiry */

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
    ngx_acs_curl_t  *ac = clientp;

    ngx_socket_t   s;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }

    s = ngx_socket(addr->family, addr->socktype, addr->protocol);
    if (s == (ngx_socket_t) -1) {
        ngx_log_error(NGX_LOG_ERR, ac->log, ngx_socket_errno,
                      "acs_notify: " ngx_socket_n " failed");
        return CURL_SOCKET_BAD;
    }

    if (ngx_acs_curl_track(s) == NULL) {
        ngx_close_socket(s);
        return CURL_SOCKET_BAD;
    }

    return s;
}


/* an nginx connection for a socket of curl's, in the fd table */

static ngx_connection_t *
ngx_acs_curl_track(ngx_socket_t s)
{
    ngx_uint_t          n;
    ngx_connection_t   *c, **fds;
    ngx_acs_curl_t     *ac = &ngx_acs_curl;

    if ((ngx_uint_t) s >= ac->nfds) {
        n = ngx_max((ngx_uint_t) s + 1, 2 * ac->nfds);
        n = ngx_max(n, 64);

        fds = ngx_alloc(n * sizeof(ngx_connection_t *), ac->log);
        if (fds == NULL) {
            return NULL;
        }

        ngx_memzero(fds, n * sizeof(ngx_connection_t *));

        if (ac->fds) {
            ngx_memcpy(fds, ac->fds, ac->nfds * sizeof(ngx_connection_t *));
            ngx_free(ac->fds);
        }

        ac->fds = fds;
        ac->nfds = n;
    }

    if (ac->fds[s]) {
        /* curl closed a socket without saying so: should never happen */
        ngx_log_error(NGX_LOG_ALERT, ac->log, 0,
                      "acs_notify: curl socket %d reused before its removal",
                      s);
    }

    c = ngx_get_connection(s, ac->log);
    if (c == NULL) {
        return NULL;
    }

    c->read->handler = ngx_acs_curl_event_handler;
    c->write->handler = ngx_acs_curl_event_handler;
    c->read->log = ac->log;
    c->write->log = ac->log;
    c->log = ac->log;

    ac->fds[s] = c;

    return c;
}


static int
ngx_acs_curl_close_socket(void *clientp, curl_socket_t s)
{
    ngx_acs_curl_t  *ac = clientp;

    ngx_connection_t  *c;

    c = ngx_acs_curl_conn(s);

    if (c) {
        /* forget the events before the fd can be reused */

        if (c->read->active) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        ac->fds[s] = NULL;
        ngx_free_connection(c);
        c->fd = (ngx_socket_t) -1;
    }

    if (ngx_close_socket(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, ac->log, ngx_socket_errno,
                      "acs_notify: " ngx_close_socket_n " failed");
        return 1;
    }

    return 0;
}


static ngx_connection_t *
ngx_acs_curl_conn(curl_socket_t s)
{
    if (s < 0 || (ngx_uint_t) s >= ngx_acs_curl.nfds) {
        return NULL;
    }

    return ngx_acs_curl.fds[s];
}


/* Retry-After and TrackingId, from the headers of the answer */

static size_t
ngx_acs_curl_header(char *buf, size_t size, size_t n, void *data)
{
    ngx_acs_http_t  *h = data;

    u_char     *p, *last;
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

        secs = ngx_atoi(p, last - p);

        if (secs == NGX_ERROR) {
            t = ngx_parse_http_time(p, last - p);
            secs = (t == NGX_ERROR) ? 0 : ngx_max(t - ngx_time(), 0);
        }

        h->retry_after = secs;

    } else if (len > 11
               && ngx_strncasecmp(p, (u_char *) "TrackingId:", 11) == 0)
    {
        for (p += 11; p < last && *p == ' '; p++) { /* void */ }

        h->tracking_id_len = ngx_min((size_t) (last - p),
                                     sizeof(h->tracking_id));
        ngx_memcpy(h->tracking_id, p, h->tracking_id_len);
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
    int                running;
    ngx_connection_t  *c;

    c = ev->data;

    curl_multi_socket_action(ngx_acs_curl.multi, c->fd,
                             ev->write ? CURL_CSELECT_OUT : CURL_CSELECT_IN,
                             &running);

    /* c may be freed by now: curl may have closed the socket */

    ngx_acs_curl_collect();
}


static void
ngx_acs_curl_timer_handler(ngx_event_t *ev)
{
    int  running;

    curl_multi_socket_action(ngx_acs_curl.multi, CURL_SOCKET_TIMEOUT, 0,
                             &running);

    ngx_acs_curl_collect();
}


static void
ngx_acs_curl_collect(void)
{
    int              left;
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

        curl_multi_remove_handle(ac->multi, easy);
        ac->running--;

        curl_slist_free_all(h->headers);
        h->headers = NULL;
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
    }
}
