#!/usr/bin/env bash
# Chaos: what is lost, what is pushed twice, how long Event Grid waits, when
# workers are killed, nginx reloaded, the hub flaps, or a key set is hostile.
# nginx with the module (2 workers), the distant stand-in as the hub (20 ms
# away, journaling every request), an Event Grid simulator that delivers
# again what is not answered 2xx (bench/lib/chaos.py), a probe of the same
# nginx every 50-100 ms.  See bench/README.md ("chaos.sh").
#
#   bench/chaos.sh [SCENARIO...]    kill reload flap keys (default: all)
#
# Environment: SECONDS_EACH (seconds of deliveries per scenario, 30), RATE
# (deliveries a second, 20), PER (events a delivery, 10), USERS (1000),
# NGINX_BIN, NODE.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/chaos
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
NODE=${NODE:-node}
SECS=${SECONDS_EACH:-30}
RATE=${RATE:-20}
PER=${PER:-10}
USERS=${USERS:-1000}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(kill reload flap keys)
# KEY, NHKEY, SECRET and conn()
. "$ROOT/bench/lib/common.sh"
DHELP=(perl "$ROOT/bench/lib/dispatch-helper.pl")
CHAOS=(python3 "$ROOT/bench/lib/chaos.py")

command -v "$NODE" >/dev/null || { echo "node is needed: apt-get install nodejs" >&2; exit 1; }
[ -f objs/ngx_http_acs_notify_module.so ] || ./build.sh build

mkdir -p "$ROOT/bench/results"
# children close fd 9 (9>&-): nginx and node outlive a run by a moment
exec 9>"$ROOT/bench/results/.chaos.lock"
flock -n 9 || { echo "another bench/chaos.sh is running" >&2; exit 1; }
rm -rf "$RUN"
mkdir -p "$RUN"/{module,keys,hub}/{conf,logs,tmp} "$RUN/keys/www" "$RUN/module/core"
chmod 1777 "$RUN/module/core"
cp objs/ngx_http_acs_notify_module.so "$RUN/module.so"
read -r MOD KEYS CTL <<<"$("${DHELP[@]}" ports 3)"
CA=$("${DHELP[@]}" ca "$RUN/ca")

PIDS=()
cleanup() {
    local p m
    for m in module keys; do
        p=$(cat "$RUN/$m/logs/nginx.pid" 2>/dev/null || true)
        [ -z "$p" ] || kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the hub: the distant stand-in, 20 ms away, every request journaled

"$NODE" "$ROOT/t/lib/distant-hub.mjs" --cert "$RUN/ca/server.pem" --cert-key "$RUN/ca/server.key" \
    --namespace chaos-ns --hub chaos-hub --key-name DefaultFullSharedAccessSignature \
    --key "$NHKEY" --control-port "$CTL" --delay 20 --journal "$RUN/hub/journal.jsonl" \
    --ready-file "$RUN/hub/ready" --parent-pid $$ >"$RUN/hub/logs/out.txt" 2>&1 9>&- &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$RUN/hub/ready" ] && break; sleep 0.05; done
HUB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$RUN/hub/ready")
mode() { curl -s --max-time 5 -X POST -H 'Content-Type: application/json' --data "$1" "http://127.0.0.1:$CTL/mode" >/dev/null; }

# --- the key server: a stock nginx with TLS serving whatever keys.json is

cat >"$RUN/keys/conf/nginx.conf" <<CONF
worker_processes 1;
pid $RUN/keys/logs/nginx.pid;
error_log $RUN/keys/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$KEYS ssl;
        ssl_certificate $RUN/keys/cert.pem;
        ssl_certificate_key $RUN/keys/key.pem;
        location = /keys { alias $RUN/keys/www/keys.json; default_type application/json; }
    }
}
CONF
# its own certificate, for 127.0.0.1
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$RUN/keys/key.pem" -out "$RUN/keys/cert.pem" \
    >/dev/null 2>&1
# 1 MB that would take a tree builder long: 8,000 arrays 60 deep
python3 -c 'import sys; sys.stdout.write("{\"keys\":[" + ("[" * 60 + "]" * 60 + ",") * 8000 + "[]]}")' \
    >"$RUN/keys/www/keys.json"
"$NGINX" -p "$RUN/keys/" -c "$RUN/keys/conf/nginx.conf" -e "$RUN/keys/logs/error.log" 9>&-

# --- the module's nginx: two workers, defaults

conn chaos-ns "$RUN/module"
cat >"$RUN/module/conf/nginx.conf" <<CONF
load_module $RUN/module.so;
worker_processes 2;
worker_rlimit_nofile 16384;
pid $RUN/module/logs/nginx.pid;
error_log $RUN/module/logs/error.log info;
worker_rlimit_core 2g;
working_directory $RUN/module/core;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/module/tmp;
    client_max_body_size 2m;
    acs_notify_registry $RUN/module/registry;
    acs_notify_hub main connection_string=file:$RUN/module/conf/chaos-ns.conn hub=chaos-hub
                   connect_to=127.0.0.1:$HUB ca_file=$CA;
    server {
        listen 127.0.0.1:$MOD reuseport;
        location = /probe { return 200; }
        location = /eg { acs_notify_eventgrid; }
        location = /eg-entra {
            acs_notify_eventgrid;
            acs_notify_entra jwks=https://127.0.0.1:$KEYS/keys jwks_ca_file=$RUN/keys/cert.pem
                             jwks_refresh=1s audience=api://chaos tenant=chaos;
        }
        location = /status { acs_notify_status; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
    }
}
CONF
start() {
    "$NGINX" -p "$RUN/module/" -c "$RUN/module/conf/nginx.conf" -e "$RUN/module/logs/error.log" 9>&-
    for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$MOD/probe" && return 0; sleep 0.05; done
    echo "the module's nginx did not start" >&2; exit 1
}
# the master's children alive (a zombie, killed and not yet reaped, is not)
workers() {
    local w
    for w in $(pgrep -P "$(cat "$RUN/module/logs/nginx.pid")"); do
        grep -q '^[0-9]* ([^)]*) [^Z]' "/proc/$w/stat" 2>/dev/null && echo "$w"
    done
    return 0
}
status() {
    curl -s --max-time 5 "http://127.0.0.1:$MOD/status" | python3 -c '
import json, sys
j = json.load(sys.stdin)
print("queue_depth %d, in_flight %d, hub_connections %d" % (j["queue_depth"], j["in_flight"], j["hub_connections"]))'
}

echo "== $USERS recipients, one device each"
start
"${DHELP[@]}" register "$MOD" "$KEY" 1 "$USERS" 1

# run NAME CHAOS-FUNCTION: deliveries for SECS seconds with the chaos
# beside, then until Event Grid has its 2xx for every one
run() {
    local name=$1 chaos=$2 eg stop=$RUN/$1.stop
    echo "== $name"
    : >"$RUN/hub/journal.jsonl"
    rm -f "$stop"
    "${CHAOS[@]}" probe "$MOD" "$stop" "$RUN/$name.probe.json" 9>&- &
    local probe=$!
    "${CHAOS[@]}" eventgrid "$MOD" /eg "$USERS" $((SECS * RATE * PER)) "$PER" "$RATE" "$RUN/$name.eg.json" "$name" 9>&- &
    eg=$!
    $chaos
    wait "$eg"
    sleep 2
    touch "$stop"
    wait "$probe"
    "${CHAOS[@]}" count "$RUN/hub/journal.jsonl" "$RUN/$name.eg.json" | sed 's/^/   /'
    python3 -c 'import json,sys; j = json.load(open(sys.argv[1])); print("   probes %d, the longest %.0f ms, %d over 50 ms" % (j["probes"], j["waits"][0] if j["waits"] else 0, j["over50"]))' \
        "$RUN/$name.probe.json"
    echo "   once drained: $(status)"
}

chaos_kill() {
    local i w
    for i in 1 2 3 4 5; do
        sleep $((SECS / 6))
        w=$(workers | shuf -n 1)
        # a worker may exit between the two: no reason to stop the run
        if [ -n "$w" ] && kill -KILL "$w" 2>/dev/null; then
            echo "   kill -9 worker $w"
        fi
    done
}
chaos_reload() {
    local i
    for i in $(seq 1 $((SECS / 2))); do
        sleep 2
        kill -HUP "$(cat "$RUN/module/logs/nginx.pid")"
    done
    echo "   $((SECS / 2)) reloads"
}
chaos_flap() {
    local step=$((SECS / 10 > 0 ? SECS / 10 : 1)) m
    for m in '{"fail":503}' '{"fail":null}' '{"fail":429,"retry_after":1}' '{"fail":null,"retry_after":null}' \
             '{"fail":500}' '{"fail":null}' '{"hang":true}' '{"hang":false}' '{"refuse":true}' '{"refuse":false}'; do
        mode "$m"
        echo "   hub: $m"
        sleep "$step"
    done
}

for s in "${SCENARIOS[@]}"; do
    case $s in
    kill)   run kill chaos_kill ;;
    reload) run reload chaos_reload ;;
    flap)   run flap chaos_flap ;;
    keys)
        echo "== keys: a 1 MB key set of 8,000 arrays 60 deep, fetched by each worker every second"
        rm -f "$RUN/keys.stop"
        from=$(wc -l <"$RUN/module/logs/error.log")
        "${CHAOS[@]}" probe "$MOD" "$RUN/keys.stop" "$RUN/keys.probe.json" 9>&- &
        p=$!
        sleep "$SECS"
        touch "$RUN/keys.stop"
        wait "$p"
        python3 -c 'import json,sys; j = json.load(open(sys.argv[1])); print("   probes %d, the longest %.0f ms, %d over 50 ms" % (j["probes"], j["waits"][0] if j["waits"] else 0, j["over50"]))' \
            "$RUN/keys.probe.json"
        tail -n +"$((from + 1))" "$RUN/module/logs/error.log" >"$RUN/keys.log"
        echo "   $(grep -c 'not fetched' "$RUN/module/logs/error.log" || true) failed fetches logged since nginx started, $(grep -c 'exited on signal' "$RUN/keys.log" || true) workers died"
        ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
    esac
done
echo "workers killed by the run: $(grep -c 'exited on signal 9$' "$RUN/module/logs/error.log" || true);" \
    "died on their own (crashes): $(grep 'exited on signal' "$RUN/module/logs/error.log" | grep -vc 'signal 9$' || true)"
