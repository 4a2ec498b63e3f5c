#!/usr/bin/env bash
# Distance benchmark: one pinned nginx worker with the module's defaults
# (acs_notify_hub without any tuning option) sending to a Notification Hubs
# stand-in that answers after 0, 40 and 150 ms, over HTTP/2 and to a hub that
# offers HTTP/1.1 only, and to one that throttles past 300 in flight.  Every
# figure against the 0 ms run of the same invocation; bars with PASS/FAIL.
# See bench/README.md ("distance.sh").
#
#   bench/distance.sh            (after ./build.sh build; needs wrk, node)
#
# Environment: DUR (seconds measured per case, 15), WARM (seconds of load
# before, 8), USERS (recipients, 10000: the first half with 2 devices, 1.5
# per user), PER (events per delivery, 50), CONNS (deliveries at once, 32),
# ONLY (cases: 0 40 150 h1-0 h1-150 throttle; default all), JITTER (ms added
# at random to every delay, 0), PIN (1: the module's worker on CPU 1, the
# rest on CPU 0), NGINX_BIN, NODE.

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
KEY=dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=
NHKEY=c2FtcGxlLXNoYXJlZC1hY2Nlc3Mta2V5LW5vdC1yZWFsPQ==
SECRET=bench-secret-0123456789
DHELP=(perl "$ROOT/bench/lib/dispatch-helper.pl")
EHELP=(perl "$ROOT/bench/lib/engine-helper.pl")
CLK_TCK=$(getconf CLK_TCK)

want() { [[ " ${ONLY//,/ } " == *" $1 "* ]]; }

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v "$NODE" >/dev/null || { echo "node is needed: apt-get install nodejs" >&2; exit 1; }
[ -f objs/ngx_http_acs_notify_module.so ] || ./build.sh build

mkdir -p "$ROOT/bench/results"
exec 9>"$ROOT/bench/results/.distance.lock"
flock -n 9 || { echo "another bench/distance.sh is running (it owns $RUN)" >&2; exit 1; }
rm -rf "$RUN"
mkdir -p "$RUN"/{module,hub,hub-h1}/{conf,logs,tmp} "$RUN"/{lua,wrk,snap}
cp objs/ngx_http_acs_notify_module.so "$RUN/module.so"
MODULE=$RUN/module.so
{
    echo "module: sha256 $(sha256sum "$MODULE" | cut -c1-12), HEAD $(git rev-parse --short HEAD), $(git status --porcelain -- ngx_acs_notify_module config | wc -l) uncommitted change(s) in the module's sources"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $(curl --version | head -1 | cut -d' ' -f1-2), node $("$NODE" --version)"
} >"$RUN/build.txt"
read -r MOD HUB_CTL H1_CTL <<<"$("${DHELP[@]}" ports 3)"
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
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# the stand-ins: HTTP/2 and HTTP/1.1 offered, and HTTP/1.1 only
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

printf 'Endpoint=sb://bench-ns.servicebus.windows.net/;SharedAccessKeyName=DefaultFullSharedAccessSignature;SharedAccessKey=%s\n' \
    "$NHKEY" >"$RUN/module/conf/nh.conn"
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
    acs_notify_hub main connection_string=file:$RUN/module/conf/nh.conn hub=bench-hub
                   connect_to=127.0.0.1:$HUB ca_file=$CA;
    acs_notify_hub h1only connection_string=file:$RUN/module/conf/nh.conn hub=bench-hub
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

# run NAME PATH CONTROL-PORT MODE-JSON
run() {
    local name=$1 path=$2 port=$3 mode=$4 w url
    echo "== $name: $mode"
    ctl "$port" POST /mode "$mode" >"$RUN/snap/$name.mode"
    restart
    w=$(worker)
    url="http://127.0.0.1:$MOD$path?code=$SECRET"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name-warm.lua" "$path" "$PER" 1 "$USERS" "$TAG"
    tag; "${EHELP[@]}" lua "$RUN/lua/$name.lua" "$path" "$PER" 1 "$USERS" "$TAG"
    sed -i "s|local path = \"$path\"|local path = \"$path?code=$SECRET\"|" \
        "$RUN/lua/$name-warm.lua" "$RUN/lua/$name.lua"
    ctl "$port" POST /reset >/dev/null
    "${WRK[@]}" -t1 -c"$CONNS" -d"${WARM}s" --timeout 30s -s "$RUN/lua/$name-warm.lua" "$url" \
        >"$RUN/wrk/$name-warm.txt" 2>&1
    ctl "$port" GET /stats >"$RUN/snap/$name.a.json"
    curl -s "http://127.0.0.1:$MOD/status" >"$RUN/snap/$name.a.status"
    echo "$(date +%s.%N) $(ticks "$w")" >"$RUN/snap/$name.a"
    "${WRK[@]}" -t1 -c"$CONNS" -d"${DUR}s" --timeout 30s --latency -s "$RUN/lua/$name.lua" "$url" \
        >"$RUN/wrk/$name.txt" 2>&1
    echo "$(date +%s.%N) $(ticks "$w")" >"$RUN/snap/$name.b"
    ctl "$port" GET /stats >"$RUN/snap/$name.b.json"
    curl -s "http://127.0.0.1:$MOD/status" >"$RUN/snap/$name.b.status"
    printf '%s\t%s\n' "$name" "$path" >>"$RUN/results.tsv"
    python3 "$ROOT/bench/lib/distance-summary.py" "$RUN" "$CLK_TCK" "$PER" one "$name"
}

j() { printf '{"delay":%s,"jitter":%s,"throttle":%s,"fail":null,"hang":false,"refuse":false}' "$1" "$JITTER" "${2:-0}"; }

want 0 && run d0 /eg "$HUB_CTL" "$(j 0)"
want 40 && run d40 /eg "$HUB_CTL" "$(j 40)"
want 150 && run d150 /eg "$HUB_CTL" "$(j 150)"
want h1-0 && run h1d0 /eg-h1 "$H1_CTL" "$(j 0)"
want h1-150 && run h1d150 /eg-h1 "$H1_CTL" "$(j 150)"
want throttle && run throttle /eg "$HUB_CTL" "$(j 40 300)"

python3 "$ROOT/bench/lib/distance-summary.py" "$RUN" "$CLK_TCK" "$PER" all | tee "$RUN/summary.txt"
