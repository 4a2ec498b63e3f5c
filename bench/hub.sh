#!/usr/bin/env bash
# Hub registry against registry on disk: requests to Notification Hubs and
# worker CPU per event, in one run on one pinned worker.  See bench/README.md
# ("hub.sh").
#
#   bench/hub.sh            (after ./build.sh build; needs wrk)
#
# Environment: DUR (seconds per case, 10), PER (events per delivery, 50),
# NRECIP (users, 200), PIN (1: worker on CPU 1, wrk and sink on CPU 0).
#
# Cases, each with the same deliveries (PER chat events to users taken in
# turn, every event id distinct so de-duplication never skips one):
#   disk-1   registry on disk, 1 device per user (fcmv1): direct sends
#   disk-3   registry on disk, 3 devices per user (2 fcmv1, 1 apns)
#   hub-2    hub registry, platforms=apns,fcmv1: tag sends (how many
#            devices a user has does not change what nginx sends)
#   hub-4    hub registry, platforms=apns,fcmv1,wns,browser
# The hub's stand-in is a stock nginx with TLS answering 201 to every push
# (NH's fan-out to devices happens in NH, not in nginx, and is not
# measured); its access log counts the requests.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/hub
DUR=${DUR:-10}
PER=${PER:-50}
NRECIP=${NRECIP:-200}
PIN=${PIN:-1}
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
KEY=dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=
NHKEY=c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==
SECRET=bench-secret-0123456789
DHELP=(perl "$ROOT/bench/lib/dispatch-helper.pl")

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
[ -f objs/ngx_http_acs_notify_module.so ] || ./build.sh build

rm -rf "$RUN"
mkdir -p "$RUN"/{sink,module}/{conf,logs,tmp} "$RUN/sink/empty"
cp objs/ngx_http_acs_notify_module.so "$RUN/module.so"
read -r SINK MOD <<<"$("${DHELP[@]}" ports 2)"
CA=$("${DHELP[@]}" ca "$RUN/ca")

WRK=(wrk) SINK_AFF='' MOD_AFF=''
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SINK_AFF='worker_cpu_affinity 01;'
    MOD_AFF='worker_cpu_affinity 10;'
    WRK=(taskset -c 0 wrk)
fi

stop() {
    local m
    m=$(cat "$1/logs/nginx.pid" 2>/dev/null) || return 0
    kill -TERM "$m" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$m" 2>/dev/null || break; sleep 0.05; done
    rm -f "$1/logs/nginx.pid"
}
trap 'stop "$RUN/module"; stop "$RUN/sink"' EXIT

start() {
    "$NGINX" -p "$1/" -c "$1/conf/nginx.conf" -e "$1/logs/error.log"
    for _ in $(seq 1 100); do
        [ -s "$1/logs/nginx.pid" ] && [ -n "$(worker "$1")" ] && return 0
        sleep 0.05
    done
    echo "nginx in $1 did not start" >&2
    exit 1
}
worker() {
    local m
    m=$(cat "$1/logs/nginx.pid" 2>/dev/null) || return 0
    awk '{print $1}' "/proc/$m/task/$m/children" 2>/dev/null
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
status() { curl -s "http://127.0.0.1:$MOD/status"; }
quiet() {  # until the module has nothing queued or running
    for _ in $(seq 1 200); do
        status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["queue_depth"] == 0 and s["in_flight"] == 0 else 1)' && return 0
        sleep 0.1
    done
}
events() {
    status | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"].get("ChatMessageReceived", 0))'
}
sink_requests() { wc -l <"$RUN/sink/logs/access.log"; }

# --- the stand-in: 201 after reading the push, one access log line each

cat >"$RUN/sink/conf/nginx.conf" <<CONF
worker_processes 1;
$SINK_AFF
pid $RUN/sink/logs/nginx.pid;
error_log $RUN/sink/logs/error.log warn;
events { worker_connections 4096; }
http {
    log_format n '\$request_method \$uri';
    access_log $RUN/sink/logs/access.log n;
    client_body_temp_path $RUN/sink/tmp;
    server {
        listen 127.0.0.1:$SINK ssl;
        ssl_certificate $RUN/ca/server.pem;
        ssl_certificate_key $RUN/ca/server.key;
        keepalive_requests 1000000;
        root $RUN/sink/empty;
        include $ROOT/bench/lib/sink-201.conf;
    }
}
CONF
start "$RUN/sink"

module_conf() {  # the registry directive
    cat >"$RUN/module/conf/nginx.conf" <<CONF
load_module $RUN/module.so;
worker_processes 1;
$MOD_AFF
pid $RUN/module/logs/nginx.pid;
error_log $RUN/module/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/module/tmp;
    client_max_body_size 8m;
    client_body_buffer_size 1m;
    acs_notify_hub main "connection_string=Endpoint=sb://bench-ns.servicebus.windows.net/;SharedAccessKeyName=DefaultFullSharedAccessSignature;SharedAccessKey=$NHKEY" hub=bench-push connect_to=127.0.0.1:$SINK ca_file=$CA;
    $1
    server {
        listen 127.0.0.1:$MOD;
        keepalive_requests 1000000;
        location = /eg {
            acs_notify_eventgrid hub=main;
            acs_notify_secret \$arg_code $SECRET;
        }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
        location = /status { acs_notify_status; }
    }
}
CONF
}

"${DHELP[@]}" lua "$RUN/load.lua" "/eg?code=$SECRET" "$PER" 1 "$NRECIP" a001 >/dev/null

: >"$RUN/results.tsv"
tag=1
run_case() {  # name
    local w t0 t1 e0 e1 s0 s1
    stop "$RUN/module"
    start "$RUN/module"
    w=$(worker "$RUN/module")
    [ "$PIN" = 1 ] && taskset -pc 1 "$w" >/dev/null 2>&1 || true
    # one warm-up second, then the measured run
    "${DHELP[@]}" lua "$RUN/warm.lua" "/eg?code=$SECRET" "$PER" 1 "$NRECIP" "$(printf 'b%03x' $tag)" >/dev/null
    "${WRK[@]}" -t1 -c8 -d1s -s "$RUN/warm.lua" "http://127.0.0.1:$MOD" >/dev/null
    quiet
    "${DHELP[@]}" lua "$RUN/load.lua" "/eg?code=$SECRET" "$PER" 1 "$NRECIP" "$(printf 'c%03x' $tag)" >/dev/null
    tag=$((tag + 1))
    e0=$(events) s0=$(sink_requests) t0=$(ticks "$w")
    "${WRK[@]}" -t1 -c8 -d"${DUR}s" -s "$RUN/load.lua" "http://127.0.0.1:$MOD" >"$RUN/wrk-$1.txt"
    quiet
    e1=$(events) s1=$(sink_requests) t1=$(ticks "$w")
    printf '%s\t%s\t%s\t%s\n' "$1" $((e1 - e0)) $((s1 - s0)) $((t1 - t0)) >>"$RUN/results.tsv"
    echo "  $1: $((e1 - e0)) events, $((s1 - s0)) requests to the hub, $((t1 - t0)) ticks of worker CPU"
}

echo "== registry on disk, 1 device per user"
rm -rf "$RUN/registry"
module_conf "acs_notify_registry $RUN/registry;"
start "$RUN/module"
"${DHELP[@]}" register "$MOD" "$KEY" 1 "$NRECIP" 1
run_case disk-1

echo "== registry on disk, 3 devices per user"
"${DHELP[@]}" register "$MOD" "$KEY" 1 "$NRECIP" 3
run_case disk-3

echo "== hub registry, platforms=apns,fcmv1"
module_conf "acs_notify_registry hub=main platforms=apns,fcmv1;"
run_case hub-2

echo "== hub registry, platforms=apns,fcmv1,wns,browser"
module_conf "acs_notify_registry hub=main platforms=apns,fcmv1,wns,browser;"
run_case hub-4

echo
CLK=$(getconf CLK_TCK)
awk -v clk="$CLK" -F'\t' '
    BEGIN { printf "%-8s %9s %12s %10s %13s %10s\n", "case", "events", "hub requests", "req/event", "us CPU/event", "cpu/disk-1" }
    { name[NR] = $1; ev[NR] = $2; rq[NR] = $3; us[NR] = $4 * 1e6 / clk / ($2 ? $2 : 1) }
    END {
        for (i = 1; i <= NR; i++)
            printf "%-8s %9d %12d %10.2f %13.1f %10.2f\n", name[i], ev[i], rq[i],
                   rq[i] / (ev[i] ? ev[i] : 1), us[i], us[i] / us[1]
    }' "$RUN/results.tsv" | tee "$RUN/summary.txt"
grep -c '\[\(alert\|crit\|emerg\)\]' "$RUN/module/logs/error.log" | sed 's/^/module [alert]\/[crit]\/[emerg] lines: /'
