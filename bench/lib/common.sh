# bench/lib/common.sh: what the benches share (dispatch.sh, engine.sh, and
# the keys and conn() of distance.sh and chaos.sh),
# sourced after they set RUN, NHKEY, SINK_AFF and the sink's ports
# (SINK_H2, SINK_H1, SINK_ST, STALL).

# the keys of the benches' hubs and registrations (test keys, not secrets)
KEY=dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=
NHKEY=c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==
SECRET=bench-secret-0123456789
CLK_TCK=$(getconf CLK_TCK)

worker_of() {  # prefix -> pid of its (single) worker
    local m
    m=$(cat "$1/logs/nginx.pid" 2>/dev/null) || return 0
    cat "/proc/$m/task/$m/children" 2>/dev/null | awk '{print $1}'
}

conn() {  # namespace prefix -> a connection-string file in prefix/conf
    printf 'Endpoint=sb://%s.servicebus.windows.net/;SharedAccessKeyName=DefaultFullSharedAccessSignature;SharedAccessKey=%s\n' \
        "$1" "$NHKEY" >"$2/conf/$1.conn"
}

# The sink: a stock nginx with TLS, HTTP/2 and HTTP/1.1, 201 to every push
# (the server{} blocks of the two 201 answers are given), pushes under
# STALL_PATH held by bench/lib/stall-sink.py; stub_status on SINK_ST.
sink_conf() {  # keepalive_requests stall-path stall-timeout h2-201 h1-201
    cat >"$RUN/sink/conf/nginx.conf" <<CONF
worker_processes 1;
$SINK_AFF
worker_rlimit_nofile 16384;
pid $RUN/sink/logs/nginx.pid;
error_log $RUN/sink/logs/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $RUN/sink/tmp;
    proxy_temp_path $RUN/sink/tmp;
    keepalive_requests $1;
    keepalive_timeout 300s;
    http2_max_concurrent_streams 1000;
    client_body_buffer_size 16k;
    ssl_certificate $RUN/ca/server.pem;
    ssl_certificate_key $RUN/ca/server.key;
    server {
        listen 127.0.0.1:$SINK_H2 ssl http2;
$4
        # pushes held by bench/lib/stall-sink.py
        location $2 {
            proxy_pass http://127.0.0.1:$STALL;
            proxy_read_timeout $3;
        }
    }
    server {
        listen 127.0.0.1:$SINK_H1 ssl;
$5
    }
    server {
        listen 127.0.0.1:$SINK_ST;
        location = /status { stub_status; }
    }
}
CONF
}

# the count of lines of each level in the error.log of each prefix given
count_level() { grep -c "\[$1\]" "$2" 2>/dev/null || true; }
log_levels() {  # name...: $RUN/name/logs/error.log
    local f
    for f in "$@"; do
        [ -f "$RUN/$f/logs/error.log" ] || continue
        printf '%s error.log: %s emerg, %s alert, %s crit, %s error, %s warn\n' "$f" \
            "$(count_level emerg "$RUN/$f/logs/error.log")" "$(count_level alert "$RUN/$f/logs/error.log")" \
            "$(count_level crit "$RUN/$f/logs/error.log")" "$(count_level error "$RUN/$f/logs/error.log")" \
            "$(count_level warn "$RUN/$f/logs/error.log")"
    done
}
