
/*
 * Copyright (C) ngx_acs_notify_module authors
 *
 * libcurl before 8.1.0 ends every HTTP/2 transfer whose answer has no
 * body (Notification Hubs' 201) with RST_STREAM(STREAM_CLOSED), the stream
 * being closed already: it forgets the close it saw while headers were
 * pending.  Servers built on nghttp2 1.57 or later (Node, Envoy, Apache,
 * nghttpx) take those for a rapid-reset attack, 1,000 at once and 33 a
 * second more, and close the connection with GOAWAY: a new connection and
 * TLS handshake every thousand pushes, half the throughput.
 * nghttp2_submit_rst_stream() below stands in for nghttp2's own for
 * libcurl (this module is earlier in libcurl's lookup scope): a reset of a
 * stream nghttp2 knows closed is dropped, every other goes to nghttp2.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include <nghttp2/nghttp2.h>


typedef int (*ngx_acs_rst_stream_pt)(nghttp2_session *session, uint8_t flags,
    int32_t stream_id, uint32_t error_code);


/*
 * A reset of a closed HTTP/2 stream is dropped; the others are
 * nghttp2's.  Not static: it stands in for nghttp2's own.
 */

int
nghttp2_submit_rst_stream(nghttp2_session *session, uint8_t flags,
    int32_t stream_id, uint32_t error_code)
{
    nghttp2_stream  *stream;

    static ngx_acs_rst_stream_pt  submit;

    if (submit == NULL) {
        submit = (ngx_acs_rst_stream_pt) dlsym(RTLD_NEXT,
                                               "nghttp2_submit_rst_stream");
        if (submit == NULL) {
            return NGHTTP2_ERR_INVALID_ARGUMENT;
        }
    }

    if (error_code == NGHTTP2_STREAM_CLOSED) {
        stream = nghttp2_session_find_stream(session, stream_id);

        if (stream == NULL
            || nghttp2_stream_get_state(stream) == NGHTTP2_STREAM_STATE_CLOSED)
        {
            return 0;
        }
    }

    return submit(session, flags, stream_id, error_code);
}
