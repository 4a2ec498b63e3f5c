#!/usr/bin/env bash
# Dispatch-engine benchmark: what one pinned nginx worker of the module
# spends per push as the queue deepens, as deliveries grow, over HTTP/1.1
# and HTTP/2, against the libcurl floor and the edge path; the memory of a
# queued push; call latency behind a chat backlog; and a whole hub down.
# Every figure against a baseline measured in the same run; bars printed
# with PASS/FAIL.  See bench/README.md ("engine.sh").
#
#   bench/engine.sh              (after ./build.sh build; needs wrk, python3)
#
# Environment: DUR (seconds per measurement, 10), WARM (warm-up seconds, 2),
# ONLY (cases, comma or space separated: base depth h2 size floor calls rss
# down; default all), PIN (1: module worker on CPU 1, wrk, sink and clients
# on CPU 0), CALL_MS (interval between calls, 20), RSS_N (pushes held queued,
# 50000, a multiple of 2000), DEDUP (acs_notify_dedup size=, 8m), NGINX_BIN.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/engine
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
DUR=${DUR:-10}
WARM=${WARM:-2}
PIN=${PIN:-1}
ONLY=${ONLY:-base depth h2 size floor calls rss down}
CALL_MS=${CALL_MS:-20}
RSS_N=${RSS_N:-50000}
DEDUP=${DEDUP:-8m}  # acs_notify_dedup size= (8m, the default: about 65,000 pushes)
NRECIP=500          # bench-r00001..00500, one fcmv1 device each
CALLEE='8:acs:bench-callee'
U16='8:acs:bench-u16'
DHELP=(perl "$ROOT/bench/lib/dispatch-helper.pl")
EHELP=(perl "$ROOT/bench/lib/engine-helper.pl")
LOAD=(python3 "$ROOT/bench/lib/engine-load.py")
. "$ROOT/bench/lib/common.sh"

want() { [[ " ${ONLY//,/ } " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ -f objs/ngx_http_acs_notify_module.so ] || ./build.sh build

mkdir -p "$ROOT/bench/results"
exec 9>"$ROOT/bench/results/.engine.lock"
flock -n 9 || { echo "another bench/engine.sh is running (it owns $RUN)" >&2; exit 1; }
rm -rf "$RUN"
mkdir -p "$RUN"/{sink,module,edge,down}/{conf,logs,tmp} "$RUN"/{lua,wrk,snap,bodies,load} "$RUN/module/core"
chmod 1777 "$RUN/module/core"
# a copy: a rebuild during the run does not change the module under test
cp objs/ngx_http_acs_notify_module.so "$RUN/module.so"
MODULE=$RUN/module.so
{
    echo "module: objs/ngx_http_acs_notify_module.so of $(date -r objs/ngx_http_acs_notify_module.so '+%F %T'), sha256 $(sha256sum "$MODULE" | cut -c1-12);"
    echo "  tree when the run began: HEAD $(git rev-parse --short HEAD), $(git status --porcelain -- ngx_acs_notify_module config | wc -l) uncommitted change(s) in the module's sources (the .so may be older: see its date); nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(curl --version | head -1 | cut -d' ' -f1-2)"
} >"$RUN/build.txt"
read -r SINK_H2 SINK_H1 SINK_ST STALL MOD EDGE DOWN REFUSED <<<"$("${DHELP[@]}" ports 8)"
CA=$("${DHELP[@]}" ca "$RUN/ca")
: >"$RUN/results.tsv"

WRK=(wrk) CL=() SINK_AFF='' MOD_AFF='' ON1=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SINK_AFF='worker_cpu_affinity 01;'
    MOD_AFF='worker_cpu_affinity 10;'
    WRK=(taskset -c 0 wrk)
    CL=(taskset -c 0)          # the Python clients
    ON1=(taskset -c 1)         # the libcurl floor, on the worker's CPU
fi

# --- processes we start, stopped on exit ---------------------------------

STALL_PID='' BG_PIDS=()
declare -A MASTER   # prefix -> pid of the nginx master we started
stop_nginx() {  # prefix: fast shutdown of the master we started there
    local m=${MASTER[$1]:-} i
    [ -n "$m" ] || return 0
    unset "MASTER[$1]"
    kill -TERM "$m" 2>/dev/null || return 0
    for i in $(seq 1 200); do kill -0 "$m" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$m" 2>/dev/null || true
    rm -f "$1/logs/nginx.pid"
}
cleanup() {
    local p
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    stop_nginx "$RUN/module"
    stop_nginx "$RUN/edge"
    stop_nginx "$RUN/down"
    stop_nginx "$RUN/sink"
    if [ -n "$STALL_PID" ]; then kill "$STALL_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_nginx() {  # prefix
    "$NGINX" -p "$1/" -c "$1/conf/nginx.conf" -e "$1/logs/error.log"
    local i
    for i in $(seq 1 100); do
        if [ -s "$1/logs/nginx.pid" ] && [ -n "$(worker_of "$1")" ]; then
            MASTER[$1]=$(cat "$1/logs/nginx.pid")
            return 0
        fi
        sleep 0.05
    done
    [ -s "$1/logs/nginx.pid" ] && MASTER[$1]=$(cat "$1/logs/nginx.pid")
    echo "nginx in $1 did not start" >&2
    exit 1
}

# --- the sink: stock nginx, TLS, HTTP/2 and HTTP/1.1, 201 after the body ------
# (as bench/dispatch.sh: it reads the whole push before answering, as NH does)

mkdir -p "$RUN/sink/empty"
SINK_201="
        root $RUN/sink/empty;
        include $ROOT/bench/lib/sink-201.conf;"
sink_conf 1000000 /stall-hub/ 300s "$SINK_201" "$SINK_201"

# --- the module's nginx: one worker; hubs h1 (default: HTTP/1.1), h2 ---------

for ns in bench-ns-h1 bench-ns-h2 bench-ns-stall; do conn "$ns" "$RUN/module"; done
cat >"$RUN/module/conf/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
$MOD_AFF
worker_rlimit_nofile 16384;
pid $RUN/module/logs/nginx.pid;
error_log $RUN/module/logs/error.log info;
worker_rlimit_core 1g;
working_directory $RUN/module/core;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $RUN/module/tmp;
    keepalive_requests 1000000;
    client_max_body_size 16m;
    client_body_buffer_size 1m;

    acs_notify_registry $RUN/module/registry;
    acs_notify_hub h1 connection_string=file:$RUN/module/conf/bench-ns-h1.conn hub=bench-hub
                   connect_to=127.0.0.1:$SINK_H1 ca_file=$CA timeout=5s http2=off;
    acs_notify_hub h2 connection_string=file:$RUN/module/conf/bench-ns-h2.conn hub=bench-hub
                   connect_to=127.0.0.1:$SINK_H2 ca_file=$CA timeout=5s http2=on;
    acs_notify_hub stall connection_string=file:$RUN/module/conf/bench-ns-stall.conn hub=stall-hub
                   connect_to=127.0.0.1:$SINK_H2 ca_file=$CA timeout=28s;
    acs_notify_dedup size=$DEDUP;
    acs_notify_queue 100000;

    server {
        listen 127.0.0.1:$MOD backlog=4096;
        location = /baseline { return 200; }
        location = /eg-h1 {
            acs_notify_eventgrid hub=h1;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /eg-h2 {
            acs_notify_eventgrid hub=h2;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /eg-stall {
            acs_notify_eventgrid hub=stall;
            acs_notify_secret \$arg_code $SECRET;
            acs_notify_ack accepted;
            acs_notify_dispatch_timeout 29s;
        }
        location = /status { acs_notify_status; }
        location = /nginx-status { stub_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
    }
}
CONF

# --- the edge: the same webhook without any hub (checks, parse, 200) --------

cat >"$RUN/edge/conf/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
$MOD_AFF
pid $RUN/edge/logs/nginx.pid;
error_log $RUN/edge/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $RUN/edge/tmp;
    keepalive_requests 1000000;
    client_max_body_size 2m;
    client_body_buffer_size 256k;
    server {
        listen 127.0.0.1:$EDGE;
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /status { acs_notify_status; }
        location = /nginx-status { stub_status; }
    }
}
CONF

# --- hub down: defaults (queue 10000, deadline 20s), the hub refuses ---------

conn bench-ns-down "$RUN/down"
cat >"$RUN/down/conf/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
$MOD_AFF
worker_rlimit_nofile 16384;
pid $RUN/down/logs/nginx.pid;
error_log $RUN/down/logs/error.log info;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/down/tmp;
    keepalive_requests 1000000;
    client_body_buffer_size 1m;

    acs_notify_registry $RUN/down/registry;
    acs_notify_hub down connection_string=file:$RUN/down/conf/bench-ns-down.conn hub=bench-hub
                   connect_to=127.0.0.1:$REFUSED ca_file=$CA;

    server {
        listen 127.0.0.1:$DOWN;
        location = /probe { return 200; }
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_secret \$arg_code $SECRET;
            client_max_body_size 8m;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
    }
}
CONF

start_nginx "$RUN/sink"
start_nginx "$RUN/module"
SINKW=$(worker_of "$RUN/sink")

echo "== registering $NRECIP recipients (1 device each), $CALLEE (1 device)"
t0=$(date +%s)
"${DHELP[@]}" register "$MOD" "$KEY" 1 "$NRECIP"
"${EHELP[@]}" user "$MOD" "$KEY" "$CALLEE" 1
echo "   ($(( $(date +%s) - t0 ))s)"

# a sanity check of each path before measuring anything
probe() {  # port path events first nrecip expected
    local out
    out=$("${DHELP[@]}" wave "$1" "$2" 1 "$3" "$4" "$5" "$(printf '%04x' $((RANDOM % 4096 + 61440)))")
    [ "$out" = "$6:1" ] || { echo "probe $2: got $out, expected $6" >&2; exit 1; }
}
probe "$MOD" "/eg-h1?code=$SECRET" 8 1 8 200
probe "$MOD" "/eg-h2?code=$SECRET" 8 1 8 200
"${EHELP[@]}" chat "$RUN/bodies/chat500.json" 500 1 "$NRECIP"

# --- measurement helpers ------------------------------------------------------

NEXT_TAG=$((0x1000))
tag() { NEXT_TAG=$((NEXT_TAG + 1)); TAG=$(printf '%04x' "$NEXT_TAG"); }   # not in $(...)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }   # all CPUs
status_port() { case $1 in "$RUN/module") echo "$MOD";; "$RUN/edge") echo "$EDGE";; *) echo "$DOWN";; esac; }
queue_depth() {  # port
    curl -s --max-time 5 "http://127.0.0.1:$1/status" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue_depth"])' 2>/dev/null || echo -1
}
wait_drained() {  # port: until no push is left (at most 30 s)
    local i
    for i in $(seq 1 300); do
        [ "$(queue_depth "$1")" = 0 ] && return 0
        sleep 0.1
    done
    echo "  (pushes still queued after 30 s: $(queue_depth "$1"))" >&2
}
snap() {  # file prefix wrk-pid: CPU counters, module and sink counters
    local w p
    w=$(worker_of "$2") p=$(status_port "$2")
    echo "$(date +%s.%N) $(cpu_ticks "$w") $(cpu_ticks "$SINKW") $(cpu_ticks "$3") $(busy_ticks)" >"$1"
    curl -s --max-time 5 "http://127.0.0.1:$p/status" >"$1.json" || true
    curl -s --max-time 5 "http://127.0.0.1:$p/nginx-status" >"$1.stub" || true
    curl -s --max-time 5 "http://127.0.0.1:$SINK_ST/status" >"$1.sink" || true
}

# measure NAME PREFIX PATH PER NRECIP CONNS PUSHES-PER-REQUEST
# A warm-up of WARM s; then wrk runs DUR + 2 s: the counters are read 1 s in
# and DUR s later (steady state at both ends), queue_depth sampled between.
measure() {
    local name=$1 prefix=$2 path=$3 per=$4 nrecip=$5 conns=$6 ppr=$7
    local port url wpid stop=$RUN/snap/$name.stop
    port=$(status_port "$prefix")
    url="http://127.0.0.1:$port$path"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name-warm.lua" "$path" "$per" 1 "$nrecip" "$TAG"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name.lua" "$path" "$per" 1 "$nrecip" "$TAG"
    "${WRK[@]}" -t1 -c"$conns" -d"${WARM}s" --timeout 20s -s "$RUN/lua/$name-warm.lua" "$url" \
        >"$RUN/wrk/$name-warm.txt" 2>&1
    [ "$ppr" = 0 ] || wait_drained "$port"
    "${WRK[@]}" -t1 -c"$conns" -d"$((DUR + 2))s" --timeout 20s --latency -s "$RUN/lua/$name.lua" "$url" \
        >"$RUN/wrk/$name.txt" 2>&1 &
    wpid=$!
    sleep 1
    snap "$RUN/snap/$name.a" "$prefix" "$wpid"
    if [ "$ppr" != 0 ]; then
        "${CL[@]}" "${LOAD[@]}" status "$port" 200 "$stop" "$RUN/snap/$name.depth" &
        BG_PIDS+=($!)
    fi
    sleep "$DUR"
    snap "$RUN/snap/$name.b" "$prefix" "$wpid"
    touch "$stop"
    wait "$wpid" || true
    [ ${#BG_PIDS[@]} = 0 ] || wait "${BG_PIDS[@]}" 2>/dev/null || true
    BG_PIDS=()
    [ "$ppr" = 0 ] || wait_drained "$port"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$per" "$conns" "$ppr" "$prefix" >>"$RUN/results.tsv"
    awk -v n="$name" '/^Requests\/sec/ {r = $2} /Non-2xx/ {b = $NF} /Socket errors/ {e = $0}
         END {printf "  %-12s %10s req/s  non-2xx %s%s\n", n, r, b + 0, e ? "  " e : ""}' "$RUN/wrk/$name.txt"
}

# --- the de-duplication zone, filled: every case runs with it full ------------
# An entry per push sent (about 128 bytes) until the zone is full, then the
# oldest go as new ones come: the steady state of a node after its first
# pushes.  Filled first (1.5 x what it holds), so that the first case does not
# run with a small tree and the last with a full one.

if want base || want depth || want h2 || want size || want floor || want calls; then
    fill=$(awk -v s="$DEDUP" 'BEGIN {
        n = s + 0; u = tolower(substr(s, length(s)))
        if (u == "k") n *= 1024; else if (u == "m") n *= 1048576; else if (u == "g") n *= 1073741824
        printf "%d", (int(n / 128 * 1.5 / 500) + 1) }')
    echo "== filling the de-duplication zone ($DEDUP): $((fill * 500)) pushes"
    tag; "${CL[@]}" "${LOAD[@]}" post "$MOD" "/eg-h1?code=$SECRET" "$RUN/bodies/chat500.json" "$TAG" "$fill" \
        >"$RUN/load/fill.txt"
    awk '{n[$1]++} END {for (s in n) printf "   %s deliveries answered %s\n", n[s], s}' "$RUN/load/fill.txt"
    wait_drained "$MOD"
fi

# --- 0. baseline: return 200 with the depth case's bodies ------------------------

if want base; then
    echo "== baseline: return 200, 8-event bodies, c=8"
    measure base "$RUN/module" "/baseline?code=$SECRET" 8 8 8 0
fi

# --- 1. depth: 8-event deliveries, connections x 8 = pushes in flight ---------

if want depth; then
    echo "== depth: 8 events to 8 recipients per delivery, HTTP/1.1 hub"
    for d in 8 64 512 4096; do
        measure "depth$d" "$RUN/module" "/eg-h1?code=$SECRET" 8 8 $((d / 8)) 8
    done
fi

# --- 3. HTTP/2 at the depths of 64 and 512 -----------------------------------

if want h2; then
    echo "== HTTP/2 hub (http2=on), the same deliveries"
    for d in 64 512; do
        if ! want depth; then
            measure "depth$d" "$RUN/module" "/eg-h1?code=$SECRET" 8 8 $((d / 8)) 8
        fi
        measure "h2depth$d" "$RUN/module" "/eg-h2?code=$SECRET" 8 8 $((d / 8)) 8
    done
fi

# --- 2. delivery size: 1, 50, 500 events, one push each, distinct recipients ---

if want size; then
    echo "== delivery size: 1, 50, 500 events per delivery (recipients round robin over $NRECIP)"
    measure size1 "$RUN/module" "/eg-h1?code=$SECRET" 1 "$NRECIP" 100 1
    measure size50 "$RUN/module" "/eg-h1?code=$SECRET" 50 "$NRECIP" 2 50
    measure size500 "$RUN/module" "/eg-h1?code=$SECRET" 500 "$NRECIP" 1 500
fi

# --- 4. the libcurl floor and the edge -----------------------------------------

if want floor; then
    echo "== floor: single events (c=8), the edge alone, libcurl alone"
    measure single8 "$RUN/module" "/eg-h1?code=$SECRET" 1 8 8 1
    measure h2single8 "$RUN/module" "/eg-h2?code=$SECRET" 1 8 8 1
    start_nginx "$RUN/edge" 2>"$RUN/edge/logs/start.txt"   # the no-hub warning
    probe "$EDGE" "/eg?code=$SECRET" 1 1 1 200
    measure edge "$RUN/edge" "/eg?code=$SECRET" 1 8 8 0
    stop_nginx "$RUN/edge"
    : >"$RUN/floor.tsv"
    if cc -O2 -o "$RUN/curl-floor" bench/lib/curl-floor.c -lcurl; then
        for f in "floor1 bench-ns-h1 $SINK_H1" "floor2 bench-ns-h2 $SINK_H2"; do
            set -- $f
            "${ON1[@]}" "$RUN/curl-floor" \
                "https://$2.servicebus.windows.net/bench-hub/messages/?api-version=2020-06&direct" \
                "$2.servicebus.windows.net:443:127.0.0.1:$3" "$CA" 8 "$DUR" 406 \
                | awk -v n="$1" '{print n "\t" $0}' >>"$RUN/floor.tsv"
            awk -v n="$1" '$1 == n {printf "  %-12s %10.2f transfers/s (libcurl alone, 8 in flight), %d failed\n", n, $2 / $4, $5}' \
                "$RUN/floor.tsv"
        done
    else
        echo "  (no C compiler or libcurl headers: the libcurl floor is not measured)"
    fi
fi

# --- 6. calls first: call latency alone, then behind 5,000-event chat deliveries ---

if want calls; then
    echo "== calls: one incoming call every ${CALL_MS} ms for ${DUR}s, alone, then behind a chat backlog"
    "${EHELP[@]}" call "$RUN/bodies/call.json" "$CALLEE"
    "${EHELP[@]}" chat "$RUN/bodies/chat5000.json" 5000 1 "$NRECIP"
    tag; "${CL[@]}" "${LOAD[@]}" calls "$MOD" "/eg-h1?code=$SECRET" "$RUN/bodies/call.json" 2 "$CALL_MS" "$TAG" \
        "$RUN/load/calls-warm.json"
    wait_drained "$MOD"
    snap "$RUN/snap/calls-alone.a" "$RUN/module" 0
    tag; "${CL[@]}" "${LOAD[@]}" calls "$MOD" "/eg-h1?code=$SECRET" "$RUN/bodies/call.json" "$DUR" "$CALL_MS" "$TAG" \
        "$RUN/load/calls-alone.json"
    snap "$RUN/snap/calls-alone.b" "$RUN/module" 0
    wait_drained "$MOD"
    snap "$RUN/snap/calls-backlog.a" "$RUN/module" 0
    tag; t1=$TAG; tag
    "${CL[@]}" "${LOAD[@]}" calls "$MOD" "/eg-h1?code=$SECRET" "$RUN/bodies/call.json" "$DUR" "$CALL_MS" "$t1" \
        "$RUN/load/calls-backlog.json" "/eg-h1?code=$SECRET" "$RUN/bodies/chat5000.json" "$TAG"
    snap "$RUN/snap/calls-backlog.b" "$RUN/module" 0
    wait_drained "$MOD"
    python3 - "$RUN/load" <<'PY'
import json, sys
for n in ("alone", "backlog"):
    j = json.load(open("%s/calls-%s.json" % (sys.argv[1], n)))
    b = [x["ms"] for x in j["backlog"] if x["ms"]]
    print("  calls %-8s %d calls %s, p50 %.1f ms, p99 %.1f ms, max %.1f ms%s" % (
        n, j["calls"], j["statuses"], j["p50"], j["p99"], j["max"],
        ("; %d chat deliveries of 5000, answered in %.0f-%.0f ms" % (len(b), min(b), max(b))) if b else ""))
PY
fi

# --- 5. RSS per queued push: RSS_N pushes behind a hub that never answers -------

if want rss; then
    echo "== rss: $RSS_N pushes queued behind a stalled hub (ack accepted), 1 then 16 devices per event"
    python3 "$ROOT/bench/lib/stall-sink.py" "$STALL" 300 >"$RUN/stall.log" 2>&1 &
    STALL_PID=$!
    stall() { curl -s --max-time 5 "http://127.0.0.1:$STALL/$1"; }
    for i in $(seq 1 100); do stall count >/dev/null 2>&1 && break; sleep 0.05; done
    "${EHELP[@]}" user "$MOD" "$KEY" "$U16" 16
    "${EHELP[@]}" chat-user "$RUN/bodies/u16-125.json" 125 "$U16"
    : >"$RUN/load/rss.txt"
    # rss_case LABEL BODY DELIVERIES: a fresh worker, warmed with 2 x 500
    # pushes through the stalled path (answered at once); then DELIVERIES of
    # BODY held; VmRSS and RssAnon idle and once queue_depth stops moving
    rss_case() {
        local label=$1 body=$2 n=$3 w q prev i t0 t1
        stop_nginx "$RUN/module"
        start_nginx "$RUN/module"
        w=$(worker_of "$RUN/module")
        stall release >/dev/null
        tag; "${CL[@]}" "${LOAD[@]}" post "$MOD" "/eg-stall?code=$SECRET" "$RUN/bodies/chat500.json" "$TAG" 2 \
            >"$RUN/load/rss-$label-warm.txt"
        wait_drained "$MOD"
        stall hold >/dev/null
        sleep 1
        echo "idle $label $(awk '$1 == "VmRSS:" {v = $2} $1 == "RssAnon:" {a = $2} END {print v, a}' "/proc/$w/status")" \
            >>"$RUN/load/rss.txt"
        t0=$(date +%s.%N)
        tag; "${CL[@]}" "${LOAD[@]}" post "$MOD" "/eg-stall?code=$SECRET" "$body" "$TAG" "$n" \
            >"$RUN/load/rss-$label-post.txt"
        prev=-1
        for i in $(seq 1 100); do   # until queue_depth stops moving
            q=$(queue_depth "$MOD")
            [ "$q" = "$prev" ] && break
            prev=$q
            sleep 0.3
        done
        sleep 0.5
        q=$(curl -s "http://127.0.0.1:$MOD/status" \
            | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["queue_depth"], j["in_flight"])')
        t1=$(date +%s.%N)
        echo "queued $label $(awk '$1 == "VmRSS:" {v = $2} $1 == "RssAnon:" {a = $2} END {print v, a}' "/proc/$w/status")" \
            "$q $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')" >>"$RUN/load/rss.txt"
        echo "statuses $label $(awk '{print $1}' "$RUN/load/rss-$label-post.txt" | sort | uniq -c \
            | awk '{printf "%s:%s ", $2, $1}')" >>"$RUN/load/rss.txt"
        awk -v l="$label" '$2 == l && $1 == "idle" {printf "  %-4s VmRSS idle %d kB (anon %d)", l, $3, $4}
             $2 == l && $1 == "queued" {printf " -> %d kB (anon %d) with queue_depth %s, in_flight %s, %ss after the first delivery\n", $3, $4, $5, $6, $7}' \
            "$RUN/load/rss.txt"
        stall release >/dev/null
    }
    # 1 device per event: RSS_N events; 16 devices: RSS_N / 16 events, 125 a delivery
    rss_case dev1 "$RUN/bodies/chat500.json" $((RSS_N / 500))
    rss_case dev16 "$RUN/bodies/u16-125.json" $((RSS_N / 2000))
    stop_nginx "$RUN/module"
    kill "$STALL_PID" 2>/dev/null || true
    STALL_PID=''
fi

# --- 7. hub down: 40,000 pushes to a hub that refuses connections ----------------

if want down; then
    echo "== down: one delivery of 2,500 events x 16 devices to a hub that refuses connections"
    start_nginx "$RUN/down"
    "${EHELP[@]}" user "$DOWN" "$KEY" "$U16" 16
    "${EHELP[@]}" chat-user "$RUN/bodies/down.json" 2500 "$U16"
    W=$(worker_of "$RUN/down")
    sleep 0.5
    stop=$RUN/load/down.stop
    "${CL[@]}" "${LOAD[@]}" probe "$DOWN" /probe "$stop" "$W" "$RUN/load/down-probe.json" &
    BG_PIDS+=($!)
    sleep 0.5
    logpos=$(stat -c %s "$RUN/down/logs/error.log")
    tag; "${CL[@]}" "${LOAD[@]}" post "$DOWN" "/eg?code=$SECRET" "$RUN/bodies/down.json" "$TAG" 1 60 \
        >"$RUN/load/down-post.txt"
    sleep 0.5
    touch "$stop"
    [ ${#BG_PIDS[@]} = 0 ] || wait "${BG_PIDS[@]}" 2>/dev/null || true
    BG_PIDS=()
    tail -c +"$((logpos + 1))" "$RUN/down/logs/error.log" >"$RUN/load/down-error.log"
    echo "$(stat -c %s "$RUN/bodies/down.json")" >"$RUN/load/down-size.txt"
    curl -s "http://127.0.0.1:$DOWN/status" >"$RUN/load/down-status.json"
    printf '  answer %s (status, seconds); ' "$(cat "$RUN/load/down-post.txt")"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print("probe max %.1f ms over %d probes, VmRSS %d -> peak %d kB" % (j["max"], j["probes"], j["rss0"][0], j["rss_peak"][0]))' \
        "$RUN/load/down-probe.json"
    stop_nginx "$RUN/down"
fi

stop_nginx "$RUN/module"

# --- logs ------------------------------------------------------------------------

{
    log_levels module sink edge down
    for f in module down; do
        [ -f "$RUN/$f/logs/error.log" ] || continue
        echo "most frequent [warn]-or-worse $f log lines (counts):"
        grep -E '\[(warn|error|crit|alert|emerg)\]' "$RUN/$f/logs/error.log" \
            | sed -E 's/^[0-9\/: ]+//; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//;
                     s/"[0-9a-f]{8}-[0-9a-f-]{27}"/"<id>"/g; s/[0-9]+/N/g;
                     s/, client: .*//' \
            | sort | uniq -c | sort -rn | head -6 || true
    done
} >"$RUN/logs.txt"

# --- summary -------------------------------------------------------------------

perl "$ROOT/bench/lib/engine-summary.pl" "$RUN" "$DUR" "$CLK_TCK" | tee "$RUN/summary.txt"
echo "(details: $RUN)"
