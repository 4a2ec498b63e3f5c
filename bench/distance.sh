#!/usr/bin/env bash
# Distance benchmark: one pinned nginx worker with the module's defaults
# (acs_notify_hub without any tuning option) sending to a Notification Hubs
# stand-in that answers after 0, 40 and 150 ms, over HTTP/2 and to a hub that
# offers HTTP/1.1 only, and to one that throttles past 300 in flight.  Every
# figure against the 0 ms run of the same invocation; bars with PASS/FAIL.
# See bench/README.md ("distance.sh").
#
#   bench/distance.sh            (after ./build.sh build; needs wrk, and
#                                 libnginx-mod-http-echo or, HUB_IMPL=node, node)
#
# The stand-in (HUB_IMPL):
#   nginx  (the default) stock software only: a second nginx ($NGINX, its own
#          prefix) with Debian's echo module (libnginx-mod-http-echo) reads
#          each push, waits (echo_sleep) and answers 201 with an empty body;
#          limit_conn answers 429 past 300 in flight.  Counted from its
#          access log, stub_status and /proc (bench/lib/stock-hub.py).  It
#          checks no SAS signature.
#   node   t/lib/distant-hub.mjs, this project's stand-in (checks every push
#          and its signature; counters on its control port).
#
# Environment: DUR (seconds measured per case, 15), WARM (seconds of load
# before, 8), USERS (recipients, 10000: the first half with 2 devices, 1.5
# per user), PER (events per delivery, 50), CONNS (deliveries at once, 32),
# ONLY (cases: 0 40 150 h1-0 h1-150 throttle; default all), JITTER (ms added
# at random to every delay, 0; nginx: in 16 steps), PIN (1: the module's
# worker on CPU 1, the rest on CPU 0), HUB_IMPL (nginx), HUB_WORKERS (the
# stock hub's worker processes, 1), NGINX_BIN, NODE, PERF (1: perf record -g
# of the module's worker over each measured window: results/distance/perf-CASE.data).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/distance
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
NODE=${NODE:-node}
DUR=${DUR:-15}
WARM=${WARM:-8}
USERS=${USERS:-10000}
PER=${PER:-50}
CONNS=${CONNS:-32}
JITTER=${JITTER:-0}
PIN=${PIN:-1}
ONLY=${ONLY:-0 40 150 h1-0 h1-150 throttle}
HUB_IMPL=${HUB_IMPL:-nginx}
HUB_WORKERS=${HUB_WORKERS:-1}
# KEY, NHKEY, SECRET and conn()
. "$ROOT/bench/lib/common.sh"
DHELP=(perl "$ROOT/bench/lib/dispatch-helper.pl")
EHELP=(perl "$ROOT/bench/lib/engine-helper.pl")
CLK_TCK=$(getconf CLK_TCK)

want() { [[ " ${ONLY//,/ } " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
NGINX_VER=$("$NGINX" -v 2>&1 | sed -E 's|.*nginx/([0-9.]+).*|\1|')
ver_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }  # A >= B
case $HUB_IMPL in
node)
    command -v "$NODE" >/dev/null || { echo "node is needed: apt-get install nodejs" >&2; exit 1; }
    ;;
nginx)
    ECHO_SO=$(dpkg -L libnginx-mod-http-echo 2>/dev/null | grep '/ngx_http_echo_module\.so$' | head -1 || true)
    [ -n "$ECHO_SO" ] && [ -f "$ECHO_SO" ] || {
        echo "the stock hub stand-in (HUB_IMPL=nginx) needs nginx's echo module:" \
            "apt-get install libnginx-mod-http-echo (or HUB_IMPL=node)" >&2
        exit 1
    }
    [[ $HUB_WORKERS =~ ^[1-9][0-9]*$ ]] || { echo "HUB_WORKERS: a number of processes" >&2; exit 1; }
    ;;
*)
    echo "HUB_IMPL: nginx (stock nginx + echo module) or node (t/lib/distant-hub.mjs)" >&2
    exit 1
    ;;
esac
[ -f objs/ngx_http_acs_notify_module.so ] || ./build.sh build

mkdir -p "$ROOT/bench/results"
exec 9>"$ROOT/bench/results/.distance.lock"
flock -n 9 || { echo "another bench/distance.sh is running (it owns $RUN)" >&2; exit 1; }
rm -rf "$RUN"
if [ "$HUB_IMPL" = node ]; then
    mkdir -p "$RUN"/{hub,hub-h1}/{conf,logs,tmp}
else
    mkdir -p "$RUN"/stock-hub/{conf,logs,tmp}
fi
mkdir -p "$RUN"/module/{conf,logs,tmp} "$RUN"/{lua,wrk,snap}
cp objs/ngx_http_acs_notify_module.so "$RUN/module.so"
MODULE=$RUN/module.so
{
    echo "module: sha256 $(sha256sum "$MODULE" | cut -c1-12), HEAD $(git rev-parse --short HEAD), $(git status --porcelain -- ngx_acs_notify_module config | wc -l) uncommitted change(s) in the module's sources"
    if [ "$HUB_IMPL" = node ]; then
        echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(curl --version | head -1 | cut -d' ' -f1-2), node $("$NODE" --version)"
    else
        echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(curl --version | head -1 | cut -d' ' -f1-2)"
    fi
} >"$RUN/build.txt"
if [ "$HUB_IMPL" = node ]; then
    echo "t/lib/distant-hub.mjs (this project's, node $("$NODE" --version); HUB_IMPL=node)" >"$RUN/hub.txt"
    read -r MOD HUB_CTL H1_CTL <<<"$("${DHELP[@]}" ports 3)"
else
    echo "stock nginx $NGINX_VER + echo module $(dpkg-query -W -f='${Version}' libnginx-mod-http-echo), $HUB_WORKERS worker(s) (HUB_IMPL=nginx)" >"$RUN/hub.txt"
    read -r MOD HUB HUB_H1 HUB_STAT <<<"$("${DHELP[@]}" ports 4)"
fi
echo "hub stand-in: $(cat "$RUN/hub.txt")" >>"$RUN/build.txt"
CA=$("${DHELP[@]}" ca "$RUN/ca")

WRK=(wrk) ON0=() MOD_AFF=''
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    MOD_AFF='worker_cpu_affinity 10;'
    WRK=(taskset -c 0 wrk)
    ON0=(taskset -c 0)
fi

# --- processes we start, stopped on exit ---------------------------------------

PIDS=()
cleanup() {
    local p m
    m=$(cat "$RUN/module/logs/nginx.pid" 2>/dev/null || true)
    [ -z "$m" ] || kill -TERM "$m" 2>/dev/null || true
    m=$(cat "$RUN/stock-hub/logs/nginx.pid" 2>/dev/null || true)
    [ -z "$m" ] || kill -TERM "$m" 2>/dev/null || true
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the stand-ins: HTTP/2 and HTTP/1.1 offered, and HTTP/1.1 only
if [ "$HUB_IMPL" = node ]; then
    hub() {  # dir control-port [--h1]
        local dir=$1 ctl=$2 i
        shift 2
        "${ON0[@]}" "$NODE" "$ROOT/t/lib/distant-hub.mjs" --cert "$RUN/ca/server.pem" \
            --cert-key "$RUN/ca/server.key" --namespace bench-ns --hub bench-hub \
            --key-name DefaultFullSharedAccessSignature --key "$NHKEY" \
            --control-port "$ctl" --ready-file "$dir/ready" --parent-pid $$ "$@" \
            >"$dir/logs/out.txt" 2>&1 &
        PIDS+=($!)
        for i in $(seq 1 100); do [ -s "$dir/ready" ] && break; sleep 0.05; done
        [ -s "$dir/ready" ] || { cat "$dir/logs/out.txt" >&2; exit 1; }
        python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$dir/ready"
    }
    HUB=$(hub "$RUN/hub" "$HUB_CTL")
    HUB_H1=$(hub "$RUN/hub-h1" "$H1_CTL" --h1)
    ctl() {  # control-port method path [json]
        curl -s --max-time 10 -X "$2" ${4:+-H 'Content-Type: application/json' --data "$4"} \
            "http://127.0.0.1:$1$3"
    }
fi

# The stock stand-in (HUB_IMPL=nginx): one nginx, two hubs (HTTP/2 on $HUB,
# HTTP/1.1 only on $HUB_H1) and a plain-HTTP server for its counters; a case's
# delay and throttle are written into its configuration and reloaded.
SH=$RUN/stock-hub
NOFILE=$(ulimit -Hn)  # as far as the hard limit allows (65536 fails in a container)
[ "$NOFILE" != unlimited ] && [ "$NOFILE" -lt 65536 ] || NOFILE=65536
SHELP=(python3 "$ROOT/bench/lib/stock-hub.py")
sh_conf() {  # delay-ms throttle (0: none; else on the HTTP/2 hub)
    local delay=$1 throttle=$2 pause='' k H2_LISTEN=' http2' H2_ON='' OLD_H2='' THROTTLE=''
    if [ "$JITTER" -gt 0 ]; then  # the first hex digit of the random $request_id: 16 steps
        echo "    map \$request_id \$hub_delay {"
        for k in $(seq 0 15); do
            printf '        ~^%x %s;\n' "$k" "$(awk -v d="$delay" -v j="$JITTER" -v k="$k" \
                'BEGIN { printf "%.3f", (d + j * k / 15) / 1000 }')"
        done
        echo "    }"
        pause='echo_sleep $hub_delay;'
    elif [ "$delay" -gt 0 ]; then
        pause="echo_sleep $(awk -v d="$delay" 'BEGIN { printf "%.3f", d / 1000 }');"
    fi >"$SH/conf/delay.conf"
    # HTTP/2: "http2 on" from 1.25.1; before 1.19.7 HTTP/2 had its own
    # request limit and idle timeout (keepalive_* cover it since)
    if ver_ge "$NGINX_VER" 1.25.1; then H2_LISTEN='' H2_ON='http2 on;'; fi
    [ "$throttle" -eq 0 ] || THROTTLE="limit_conn throttle $throttle;"
    if ! ver_ge "$NGINX_VER" 1.19.7; then
        OLD_H2='http2_max_requests 4294967295; http2_idle_timeout 600s;'
    fi
    cat >"$SH/conf/nginx.conf" <<SHCONF
load_module $ECHO_SO;
worker_processes $HUB_WORKERS;
worker_rlimit_nofile $NOFILE;
pid $SH/logs/nginx.pid;
error_log $SH/logs/error.log notice;
events { worker_connections 16384; }
http {
    client_body_temp_path $SH/tmp/body;
    proxy_temp_path $SH/tmp/proxy;
    fastcgi_temp_path $SH/tmp/fastcgi;
    uwsgi_temp_path $SH/tmp/uwsgi;
    scgi_temp_path $SH/tmp/scgi;
    log_format hub '\$msec \$server_port \$status \$connection \$connection_requests \$server_protocol';
    access_log $SH/logs/access.log hub;
    # the hub never ends a connection of the module's by itself
    keepalive_requests 1000000000;
    keepalive_timeout 600s;
    $OLD_H2
    http2_max_concurrent_streams 100;
    client_max_body_size 1m;
    client_body_buffer_size 64k;
    ssl_certificate $RUN/ca/server.pem;
    ssl_certificate_key $RUN/ca/server.key;
    # each request in flight counts, each HTTP/2 stream too; refused at once
    limit_conn_zone \$server_port zone=throttle:1m;
    limit_conn_status 429;
    limit_conn_log_level info;
$(cat "$SH/conf/delay.conf")

    server {
        listen 127.0.0.1:$HUB ssl$H2_LISTEN backlog=4096;
        $H2_ON
        $THROTTLE
        include $SH/conf/push.conf;
    }
    server {
        listen 127.0.0.1:$HUB_H1 ssl backlog=4096;
        include $SH/conf/push.conf;
    }
    server {
        listen 127.0.0.1:$HUB_STAT;
        access_log off;
        location = /stub { stub_status; }
        location = /conn { return 200 "\$connection\n"; }
    }
}
SHCONF
    # a direct send: POST /bench-hub/messages/?direct&api-version=...: the
    # body read, the delay, 201 without a body (HTTP/1.1: chunked, empty)
    cat >"$SH/conf/push.conf" <<SHCONF
location = /bench-hub/messages/ {
    if (\$request_method != POST) { return 405; }
    if (\$args !~ "(^|&)direct(&|\$)") { return 400; }
    if (\$args !~ "(^|&)api-version=[0-9-]+(&|\$)") { return 400; }
    echo_read_request_body;
    $pause
    echo_status 201;
}
location / { return 404; }
SHCONF
    "$NGINX" -t -q -p "$SH/" -c "$SH/conf/nginx.conf" -e "$SH/logs/error.log" \
        || { echo "the stock hub's configuration failed (above; $SH/conf)" >&2; exit 1; }
}
sh_master() { cat "$SH/logs/nginx.pid" 2>/dev/null || true; }
sh_workers() { local m; m=$(sh_master); [ -z "$m" ] || cat "/proc/$m/task/$m/children" 2>/dev/null || true; }
sh_reload() {  # after sh_conf: until only new workers are left
    local old w i n
    old=$(sh_workers)
    "$NGINX" -p "$SH/" -c "$SH/conf/nginx.conf" -e "$SH/logs/error.log" -s reload
    for i in $(seq 1 200); do
        n=0
        for w in $(sh_workers); do
            [[ " $old " == *" $w "* ]] && { n=-1; break; }
            n=$((n + 1))
        done
        [ "$n" -eq "$HUB_WORKERS" ] && return 0
        sleep 0.05
    done
    echo "the stock hub's old workers did not leave within 10 s: $(sh_workers) (were: $old)" >&2
}
if [ "$HUB_IMPL" = nginx ]; then
    mkdir -p "$SH/tmp/body"
    sh_conf 0 0
    "${ON0[@]}" "$NGINX" -p "$SH/" -c "$SH/conf/nginx.conf" -e "$SH/logs/error.log"
    for i in $(seq 1 100); do [ -n "$(sh_workers)" ] && break; sleep 0.05; done
    curl -s --max-time 5 "http://127.0.0.1:$HUB_STAT/stub" >/dev/null \
        || { echo "the stock hub did not start ($SH/logs/error.log)" >&2; exit 1; }
    # a push as the module sends it (path, query, TLS, SNI; not the signature)
    code=$(curl -s -o /dev/null -w '%{http_code} %{http_version}' --max-time 5 --cacert "$CA" \
        --connect-to "::127.0.0.1:$HUB" -H 'Content-Type: application/json' -d '{"message":{}}' \
        "https://bench-ns.servicebus.windows.net/bench-hub/messages/?api-version=2020-06&direct")
    [ "$code" = "201 2" ] || { echo "the stock hub answered '$code', not '201 2'" >&2; exit 1; }
    : >"$SH/logs/access.log"
fi

conn bench-ns "$RUN/module"
cat >"$RUN/module/conf/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
$MOD_AFF
worker_rlimit_nofile 65536;
pid $RUN/module/logs/nginx.pid;
error_log $RUN/module/logs/error.log ${LOG_LEVEL:-info};
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $RUN/module/tmp;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    client_body_buffer_size 1m;

    acs_notify_registry $RUN/module/registry;
    acs_notify_hub main connection_string=file:$RUN/module/conf/bench-ns.conn hub=bench-hub
                   connect_to=127.0.0.1:$HUB ca_file=$CA;
    acs_notify_hub h1only connection_string=file:$RUN/module/conf/bench-ns.conn hub=bench-hub
                   connect_to=127.0.0.1:$HUB_H1 ca_file=$CA;

    server {
        listen 127.0.0.1:$MOD backlog=4096;
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /eg-h1 {
            acs_notify_eventgrid hub=h1only;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
    }
}
CONF

worker() {
    local m
    m=$(cat "$RUN/module/logs/nginx.pid" 2>/dev/null) || return 0
    cat "/proc/$m/task/$m/children" 2>/dev/null | awk '{print $1}'
}
restart() {  # a fresh worker: what it learned of the hub goes
    local m i
    m=$(cat "$RUN/module/logs/nginx.pid" 2>/dev/null || true)
    if [ -n "$m" ]; then
        kill -TERM "$m" 2>/dev/null || true
        for i in $(seq 1 200); do kill -0 "$m" 2>/dev/null || break; sleep 0.05; done
    fi
    "$NGINX" -p "$RUN/module/" -c "$RUN/module/conf/nginx.conf" -e "$RUN/module/logs/error.log"
    for i in $(seq 1 100); do [ -n "$(worker)" ] && return 0; sleep 0.05; done
    echo "the module's nginx did not start" >&2
    exit 1
}
restart

echo "== registering $USERS recipients: $((USERS / 2)) with 2 devices, $((USERS - USERS / 2)) with 1"
t0=$(date +%s)
half=$((USERS / 2))
"${DHELP[@]}" register "$MOD" "$KEY" 1 "$((half / 2))" 2 &
"${DHELP[@]}" register "$MOD" "$KEY" "$((half / 2 + 1))" "$half" 2 &
"${DHELP[@]}" register "$MOD" "$KEY" "$((half + 1))" "$USERS" 1 &
wait
echo "   ($(( $(date +%s) - t0 ))s)"

# --- one case -------------------------------------------------------------------

NEXT_TAG=$((0x2000))
tag() { NEXT_TAG=$((NEXT_TAG + 1)); TAG=$(printf '%04x' "$NEXT_TAG"); }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
: >"$RUN/results.tsv"

# the stand-in's side of a case: its mode, its counters zeroed, a snapshot
# (node: its control port; nginx: configuration + reload, its access log,
# stub_status and /proc, sampled once a second while measured)
SAMPLER=''
hub_mode() {  # name h2|h1 delay throttle mode-json
    if [ "$HUB_IMPL" = node ]; then
        ctl "$(hub_ctl "$2")" POST /mode "$5" >"$RUN/snap/$1.mode"
    else
        sh_conf "$3" "$4"
        sh_reload
        echo "$5" >"$RUN/snap/$1.mode"
    fi
}
hub_ctl() { if [ "$1" = h2 ]; then echo "$HUB_CTL"; else echo "$H1_CTL"; fi; }
hub_port() { if [ "$1" = h2 ]; then echo "$HUB"; else echo "$HUB_H1"; fi; }
hub_reset() {  # h2|h1
    if [ "$HUB_IMPL" = node ]; then
        ctl "$(hub_ctl "$1")" POST /reset >/dev/null
    else
        : >"$SH/logs/access.log"
        : >"$SH/logs/samples.txt"
    fi
}
hub_snap() {  # name a|b h2|h1
    if [ "$HUB_IMPL" = node ]; then
        ctl "$(hub_ctl "$3")" GET /stats >"$RUN/snap/$1.$2.json"
    elif [ "$2" = a ]; then
        "${SHELP[@]}" snap "$SH" "$(hub_port "$3")" "$HUB_STAT" "$CLK_TCK" "$RUN/snap/$1.a.json"
    else
        "${SHELP[@]}" snap "$SH" "$(hub_port "$3")" "$HUB_STAT" "$CLK_TCK" "$RUN/snap/$1.b.json" \
            "$RUN/snap/$1.a.json"
        cp "$SH/logs/samples.txt" "$RUN/snap/$1.samples"
    fi
}
sampler() {  # start|stop
    [ "$HUB_IMPL" = nginx ] || return 0
    if [ "$1" = start ]; then
        "${ON0[@]}" "${SHELP[@]}" sample "$HUB_STAT" "$SH/logs/samples.txt" &
        SAMPLER=$!
        PIDS+=("$SAMPLER")
    elif [ -n "$SAMPLER" ]; then
        kill "$SAMPLER" 2>/dev/null || true
        wait "$SAMPLER" 2>/dev/null || true
        SAMPLER=''
    fi
}

# run NAME PATH h2|h1 DELAY-MS [THROTTLE]
run() {
    local name=$1 path=$2 which=$3 mode w url
    mode=$(j "$4" "${5:-0}")
    echo "== $name: $mode"
    hub_mode "$name" "$which" "$4" "${5:-0}" "$mode"
    restart
    w=$(worker)
    url="http://127.0.0.1:$MOD$path?code=$SECRET"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name-warm.lua" "$path" "$PER" 1 "$USERS" "$TAG"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name.lua" "$path" "$PER" 1 "$USERS" "$TAG"
    sed -i "s|local path = \"$path\"|local path = \"$path?code=$SECRET\"|" \
        "$RUN/lua/$name-warm.lua" "$RUN/lua/$name.lua"
    hub_reset "$which"
    "${WRK[@]}" -t1 -c"$CONNS" -d"${WARM}s" --timeout 30s -s "$RUN/lua/$name-warm.lua" "$url" \
        >"$RUN/wrk/$name-warm.txt" 2>&1
    hub_snap "$name" a "$which"
    curl -s "http://127.0.0.1:$MOD/status" >"$RUN/snap/$name.a.status"
    echo "$(date +%s.%N) $(ticks "$w")" >"$RUN/snap/$name.a"
    sampler start
    local perf=
    if [ "${PERF:-0}" = 1 ]; then
        perf record ${PERF_OPTS:--F 999 -g} -p "$w" -o "$RUN/perf-$name.data" -- sleep "$DUR" \
            >"$RUN/perf-$name.txt" 2>&1 &
        perf=$!
    fi
    "${WRK[@]}" -t1 -c"$CONNS" -d"${DUR}s" --timeout 30s --latency -s "$RUN/lua/$name.lua" "$url" \
        >"$RUN/wrk/$name.txt" 2>&1
    echo "$(date +%s.%N) $(ticks "$w")" >"$RUN/snap/$name.b"
    [ -z "$perf" ] || wait "$perf" || true
    sampler stop
    hub_snap "$name" b "$which"
    curl -s "http://127.0.0.1:$MOD/status" >"$RUN/snap/$name.b.status"
    printf '%s\t%s\n' "$name" "$path" >>"$RUN/results.tsv"
    python3 "$ROOT/bench/lib/distance-summary.py" "$RUN" "$CLK_TCK" "$PER" one "$name"
}

j() { printf '{"delay":%s,"jitter":%s,"throttle":%s,"fail":null,"hang":false,"refuse":false}' "$1" "$JITTER" "${2:-0}"; }

want 0 && run d0 /eg h2 0
want 40 && run d40 /eg h2 40
want 150 && run d150 /eg h2 150
want h1-0 && run h1d0 /eg-h1 h1 0
want h1-150 && run h1d150 /eg-h1 h1 150
want throttle && run throttle /eg h2 40 300

python3 "$ROOT/bench/lib/distance-summary.py" "$RUN" "$CLK_TCK" "$PER" all | tee "$RUN/summary.txt"
