#!/usr/bin/env bash
# Dispatch benchmark: what one nginx worker of the module delivers when every
# Event Grid delivery turns into HTTPS pushes to Notification Hubs, against a
# fast local TLS sink (a stock nginx answering 201), compared with a
# "return 200" location of the same nginx measured in the same run; plus the
# edge path (webhook checks, no hub) against its own baseline, and the memory
# one push in flight costs the worker.  See bench/README.md.
#
#   bench/dispatch.sh            (after ./build.sh build; needs wrk, python3)
#
# Environment: DUR (seconds per measurement, 10), WARM (warm-up seconds, 2),
# C1 (wrk connections for single events, 8), C50 (for batches, 4),
# BATCH (events per batch, 50), MEM_N (pushes held in flight, 2000),
# MEM_WAVES (times MEM_N pushes are held then released, 3),
# PIN (1: module worker on CPU 1, wrk and the sink on CPU 0), ONLY (throughput
# or memory: that part alone), FLOOR_BODY (body bytes of the libcurl floor,
# 406), SINK_EARLY (1: the sink answers before reading
# the push, see bench/README.md), NGINX_BIN.

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/dispatch
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
MODULE=$ROOT/objs/ngx_http_acs_notify_module.so
DUR=${DUR:-10}
WARM=${WARM:-2}
C1=${C1:-8}
C50=${C50:-4}
BATCH=${BATCH:-50}
MEM_N=${MEM_N:-2000}
MEM_WAVES=${MEM_WAVES:-3}
PIN=${PIN:-1}
ONLY=${ONLY:-}    # "throughput" or "memory": that part alone
FLOOR_BODY=${FLOOR_BODY:-406}   # body bytes of the libcurl floor (the fcmv1 chat push of the module)
HELPER=(perl "$ROOT/bench/lib/dispatch-helper.pl")
. "$ROOT/bench/lib/common.sh"

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
[ -f "$MODULE" ] || ./build.sh build

rm -rf "$RUN"
mkdir -p "$RUN"/{sink,module,edge}/{conf,logs,tmp} "$RUN/lua" "$RUN/wrk" "$RUN/module/core"
chmod 1777 "$RUN/module/core"   # a worker's core dump, if it crashes
read -r SINK_H2 SINK_H1 SINK_ST STALL MOD EDGE <<<"$("${HELPER[@]}" ports 6)"
CA=$("${HELPER[@]}" ca "$RUN/ca")

WRK=(wrk)
SINK_AFF='' MOD_AFF=''
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    SINK_AFF='worker_cpu_affinity 01;'
    MOD_AFF='worker_cpu_affinity 10;'
    WRK=(taskset -c 0 wrk)
fi

# --- processes we start, stopped on exit ---------------------------------

STALL_PID=''
stop_nginx() {  # prefix: fast shutdown of the master named in its pid file
    local pidf=$1/logs/nginx.pid m i
    [ -s "$pidf" ] || return 0
    m=$(cat "$pidf")
    kill -TERM "$m" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$m" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$m" 2>/dev/null || true
    rm -f "$pidf"
}
cleanup() {
    stop_nginx "$RUN/module"
    stop_nginx "$RUN/edge"
    stop_nginx "$RUN/sink"
    if [ -n "$STALL_PID" ]; then kill "$STALL_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start_nginx() {  # prefix
    "$NGINX" -p "$1/" -c "$1/conf/nginx.conf" -e "$1/logs/error.log"
    local i
    for i in $(seq 1 100); do
        [ -s "$1/logs/nginx.pid" ] && [ -n "$(worker_of "$1")" ] && return 0
        sleep 0.05
    done
    echo "nginx in $1 did not start" >&2
    exit 1
}

# --- the sink: stock nginx, TLS, HTTP/2 and HTTP/1.1, 201 to every push -----

# Notification Hubs reads the whole push before it answers 201.  A plain
# "return 201" answers as soon as the headers are in, and, over HTTP/2, then
# resets the stream (RST_STREAM NO_ERROR) while the body is still coming: a
# legal early answer that libcurl 7.88 turns into CURLE_HTTP2_STREAM (see
# bench/README.md).  So by default the sink reads the body first (mirror with
# mirror_request_body, the 404 of a missing file turned into 201); SINK_EARLY=1
# keeps the plain "return 201".
sink_201() {  # TrackingId value
    if [ "${SINK_EARLY:-0}" = 1 ]; then
        printf '        location / { add_header TrackingId %s always; return 201; }\n' "$1"
    else
        cat <<LOC
        root $RUN/sink/empty;
        log_not_found off;
        location / {
            mirror /_body;
            mirror_request_body on;
            error_page 404 =201 @created;
        }
        location @created {
            add_header TrackingId $1 always;
            return 201;
        }
        location = /_body { internal; return 204; }
LOC
    fi
}
mkdir -p "$RUN/sink/empty"

sink_conf 100000 /slow-hub/ 120s "$(sink_201 sink-h2)" "$(sink_201 sink-h1)"

# --- the module's nginx: one worker, hubs pointing at the sink ---------------

for ns in bench-ns bench-ns-h1 bench-ns-slow; do conn "$ns" "$RUN/module"; done
cat >"$RUN/module/conf/nginx.conf" <<CONF
load_module $MODULE;
worker_processes 1;
$MOD_AFF
worker_rlimit_nofile 16384;
pid $RUN/module/logs/nginx.pid;
error_log $RUN/module/logs/error.log info;
worker_rlimit_core 1g;
working_directory $RUN/module/core;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN/module/tmp;
    keepalive_requests 100000;
    client_max_body_size 2m;
    client_body_buffer_size 256k;

    acs_notify_registry $RUN/module/registry;
    acs_notify_hub h2 connection_string=file:$RUN/module/conf/bench-ns.conn hub=bench-hub
                   connect_to=127.0.0.1:$SINK_H2 ca_file=$CA timeout=5s;
    acs_notify_hub h1 connection_string=file:$RUN/module/conf/bench-ns-h1.conn hub=bench-hub
                   connect_to=127.0.0.1:$SINK_H1 ca_file=$CA timeout=5s;
    acs_notify_hub slow connection_string=file:$RUN/module/conf/bench-ns-slow.conn hub=slow-hub
                   connect_to=127.0.0.1:$SINK_H2 ca_file=$CA timeout=15s;
    acs_notify_dedup size=64m ttl=1h;
    acs_notify_queue 100000;

    server {
        listen 127.0.0.1:$MOD;
        location = /baseline { return 200; }
        location = /eg {
            acs_notify_eventgrid hub=h2;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /eg-h1 {
            acs_notify_eventgrid hub=h1;
            acs_notify_secret \$arg_code $SECRET;
        }
        location = /eg-slow {
            acs_notify_eventgrid hub=slow;
            acs_notify_secret \$arg_code $SECRET;
            acs_notify_ack accepted;
        }
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
    keepalive_requests 100000;
    client_max_body_size 2m;
    client_body_buffer_size 256k;
    server {
        listen 127.0.0.1:$EDGE;
        location = /baseline { return 200; }
        location = /eg {
            acs_notify_eventgrid;
            acs_notify_secret \$arg_code $SECRET;
        }
    }
}
CONF

start_nginx "$RUN/sink"
start_nginx "$RUN/module"
start_nginx "$RUN/edge" 2>"$RUN/edge/logs/start.txt"   # the no-hub warning

# recipients bench-r00001..BATCH, one fcmv1 device each; 99999 has none
"${HELPER[@]}" register "$MOD" "$KEY" 1 "$BATCH"

# a sanity check of each path before measuring anything
probe() {  # port path events recipients expected-status
    local out
    out=$("${HELPER[@]}" wave "$1" "$2" 1 "$3" 1 "$4" "$(printf '%04x' $((RANDOM % 4096 + 61440)))")
    [ "$out" = "$5:1" ] || { echo "probe $2: got $out, expected $5" >&2; exit 1; }
}
probe "$MOD" "/eg?code=$SECRET" 1 1 200
probe "$MOD" "/eg-h1?code=$SECRET" 1 1 200
probe "$MOD" "/eg?code=$SECRET" "$BATCH" "$BATCH" 200
probe "$EDGE" "/eg?code=$SECRET" 1 1 200

# --- measurements --------------------------------------------------------------

TAG=0
sink_requests() { curl -s "http://127.0.0.1:$SINK_ST/status" | awk 'NR == 3 {print $3}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
busy_ticks() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }   # all CPUs
to_ms() {  # wrk latency ("850.00us", "1.23ms", "2.00s") -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000
        printf "%.2f", n }'
}

: >"$RUN/results.tsv"
: >"$RUN/floor.tsv"
# measure NAME PREFIX PORT PATH EVENTS-PER-REQUEST FIRST-RECIPIENT NRECIP CONNS PUSHES-PER-REQUEST
measure() {
    local name=$1 prefix=$2 port=$3 path=$4 per=$5 first=$6 nrecip=$7 conns=$8 ppr=$9
    local url="http://127.0.0.1:$port$path" w sw t0 t1 st0 st1 b0 b1 s0 s1 wrkt
    local out rps p99 reqs non2xx errs
    TAG=$((TAG + 1))
    "${HELPER[@]}" lua "$RUN/lua/$name-warm.lua" "$path" "$per" "$first" "$nrecip" "$(printf 'a%03x' "$TAG")"
    "${HELPER[@]}" lua "$RUN/lua/$name.lua" "$path" "$per" "$first" "$nrecip" "$(printf 'b%03x' "$TAG")"
    "${WRK[@]}" -t1 -c"$conns" -d"${WARM}s" -s "$RUN/lua/$name-warm.lua" "$url" >"$RUN/wrk/$name-warm.txt" 2>&1
    sleep 0.5   # pushes of the warm-up still in flight
    w=$(worker_of "$prefix") sw=$(worker_of "$RUN/sink")
    t0=$(cpu_ticks "$w") st0=$(cpu_ticks "$sw") b0=$(busy_ticks) s0=$(sink_requests)
    /usr/bin/time -f '%U %S' -o "$RUN/wrk/$name.time" \
        "${WRK[@]}" -t1 -c"$conns" -d"${DUR}s" --latency -s "$RUN/lua/$name.lua" "$url" \
        >"$RUN/wrk/$name.txt" 2>&1
    t1=$(cpu_ticks "$w") st1=$(cpu_ticks "$sw") b1=$(busy_ticks)
    sleep 0.3
    s1=$(sink_requests)
    out=$(cat "$RUN/wrk/$name.txt")
    wrkt=$(awk -v hz="$CLK_TCK" '{printf "%d", ($1 + $2) * hz}' "$RUN/wrk/$name.time")
    rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    p99=$(to_ms "$(echo "$out" | awk '$1 == "99%" {print $2}')")
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
    errs=$(echo "$out" | awk '/Socket errors/ {gsub(/,/, ""); print $4 + $6 + $8 + $10}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rps" "$reqs" "$p99" \
        "${non2xx:-0}" "${errs:-0}" "$((t1 - t0))" "$((s1 - s0 - 1))" "$ppr" "$conns" \
        "$((st1 - st0))" "$wrkt" "$((b1 - b0))" >>"$RUN/results.tsv"
    printf '  %-10s %10s req/s  p99 %8s ms  non-2xx %s\n' "$name" "$rps" "$p99" "${non2xx:-0}"
}

if [ "$ONLY" != memory ]; then
    echo "== throughput: 1 module worker, wrk -t1, ${DUR}s each after ${WARM}s of warm-up"
    measure baseline "$RUN/module" "$MOD" "/baseline?code=$SECRET" 1 1 1 "$C1" 0
    measure single   "$RUN/module" "$MOD" "/eg?code=$SECRET" 1 1 1 "$C1" 1
    measure single1  "$RUN/module" "$MOD" "/eg-h1?code=$SECRET" 1 1 1 "$C1" 1
    measure batch    "$RUN/module" "$MOD" "/eg?code=$SECRET" "$BATCH" 1 "$BATCH" "$C50" "$BATCH"
    measure batch1   "$RUN/module" "$MOD" "/eg-h1?code=$SECRET" "$BATCH" 1 "$BATCH" "$C50" "$BATCH"
    measure nodevice "$RUN/module" "$MOD" "/eg?code=$SECRET" 1 99999 1 "$C1" 0
    measure edgebase "$RUN/edge" "$EDGE" "/baseline?code=$SECRET" 1 1 1 "$C1" 0
    measure edge     "$RUN/edge" "$EDGE" "/eg?code=$SECRET" 1 1 1 "$C1" 0

    # The libcurl floor: the same pushes sent by libcurl alone (no nginx, no
    # Event Grid, no module), on the worker's CPU, C1 in flight, same sink.
    if cc -O2 -o "$RUN/curl-floor" bench/lib/curl-floor.c -lcurl; then
        FLOOR=()
        [ -n "$MOD_AFF" ] && FLOOR=(taskset -c 1)
        for f in "floor bench-ns $SINK_H2" "floor1 bench-ns-h1 $SINK_H1"; do
            set -- $f
            "${FLOOR[@]}" "$RUN/curl-floor" \
                "https://$2.servicebus.windows.net/bench-hub/messages/?api-version=2020-06&direct" \
                "$2.servicebus.windows.net:443:127.0.0.1:$3" "$CA" "$C1" "$DUR" "$FLOOR_BODY" \
                | awk -v n="$1" '{print n "\t" $0}' >>"$RUN/floor.tsv"
            awk -v n="$1" '$1 == n {printf "  %-10s %10.2f transfers/s (libcurl alone), %d failed\n", n, $2 / $4, $5}' \
                "$RUN/floor.tsv"
        done
    else
        echo "  (no C compiler or libcurl headers: the libcurl floor is not measured)"
    fi

    # A lean client for comparison: wrk itself sending the same pushes over
    # TLS and HTTP/1.1 keep-alive to the sink, on the worker's CPU.
    cat >"$RUN/lua/lean.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("x", $FLOOR_BODY)
wrk.headers["Host"] = "bench-ns-h1.servicebus.windows.net"
wrk.headers["Content-Type"] = "application/json;charset=utf-8"
wrk.headers["ServiceBusNotification-Format"] = "fcmv1"
wrk.headers["ServiceBusNotification-DeviceHandle"] = "fcm-bench-device-handle-0000000000000000000000000"
wrk.headers["x-ms-version"] = "2020-06"
wrk.headers["Authorization"] = "SharedAccessSignature sr=https%3A%2F%2Fbench-ns.servicebus.windows.net%2Fbench-hub&sig=NF2AU4UscCmT5z8RBPspBYudBA3qBpw4oR%2FGdrqfL7c%3D&se=1700000000&skn=DefaultFullSharedAccessSignature"
LUA
    LEAN=(wrk)
    [ -n "$MOD_AFF" ] && LEAN=(taskset -c 1 wrk)
    /usr/bin/time -f '%U %S' -o "$RUN/wrk/lean.time" "${LEAN[@]}" -t1 -c"$C1" -d"${DUR}s" \
        -s "$RUN/lua/lean.lua" "https://127.0.0.1:$SINK_H1/bench-hub/messages/?api-version=2020-06&direct" \
        >"$RUN/wrk/lean.txt" 2>&1
    awk '/requests in/ {n = $1} /Non-2xx/ {bad = $NF}
         END {getline t < "'"$RUN/wrk/lean.time"'"; split(t, c, " ");
              printf "lean\t%d\t%.3f\t%s\t%d\n", n, c[1] + c[2], "'"$DUR"'", bad + 0}' \
        "$RUN/wrk/lean.txt" >>"$RUN/floor.tsv"
    awk '$1 == "lean" {printf "  %-10s %10.2f requests/s (wrk, TLS, HTTP/1.1), %d not 201\n", $1, $2 / $4, $5}' \
        "$RUN/floor.tsv"
fi
stop_nginx "$RUN/edge"

# --- memory per push in flight -------------------------------------------------
# A fresh worker (restart), warmed with a few pushes; then MEM_N pushes are
# held by the stalling upstream behind the sink ("slow" hub, ack accepted so
# the deliveries are answered 202 at once).  The worker's VmRSS and RssAnon
# idle, with the pushes in flight, and once they are answered; MEM_WAVES
# times, to see whether it stays bounded.  With gdb (MEM_GDB=1, the default
# when gdb is installed) also glibc's own account (malloc_info: heap size and
# bytes in use), which tells a leak (in use grows) from memory kept by malloc.

MEM_GDB=${MEM_GDB:-$(command -v gdb >/dev/null && echo 1 || echo 0)}

if [ "$ONLY" != throughput ]; then
    echo "== memory: $MEM_N pushes held in flight, $MEM_WAVES times"
    python3 "$ROOT/bench/lib/stall-sink.py" "$STALL" 30 >"$RUN/stall.log" 2>&1 &
    STALL_PID=$!
    stall() { curl -s --max-time 5 "http://127.0.0.1:$STALL/$1"; }
    stall_field() { stall count | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
    for i in $(seq 1 100); do stall count >/dev/null 2>&1 && break; sleep 0.05; done

    mkdir -p "$RUN/gdb"
    chmod 1777 "$RUN/gdb"
    cat >"$RUN/gdb/malloc-info.gdb" <<GDB
set \$f = (void *) fopen("$RUN/gdb/malloc-info.xml", "w")
if \$f != 0
  call (int) malloc_info(0, \$f)
  call (int) fclose(\$f)
end
detach
GDB

    stop_nginx "$RUN/module"
    start_nginx "$RUN/module"
    W=$(worker_of "$RUN/module")
    rss() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$W/status"; }   # kB
    heap() {  # "in-use-kB heap-kB" from malloc_info(), or "- -"
        local xml=$RUN/gdb/malloc-info.xml   # written by the worker (its user)
        [ "$MEM_GDB" = 1 ] || { echo "- -"; return; }
        rm -f "$xml"
        timeout 60 gdb -q -batch -p "$W" -x "$RUN/gdb/malloc-info.gdb" >/dev/null 2>&1 || true
        perl -ne '   # the last totals are those of all arenas
            $sys = $1 if /<system type="current" size="(\d+)"/;
            $free{$1} = $2 if /<total type="(fast|rest)" count="\d+" size="(\d+)"/;
            END {
                my $f = ($free{fast} // 0) + ($free{rest} // 0);
                printf "%s %s\n", defined $sys ? (int(($sys - $f) / 1024), int($sys / 1024)) : ("-", "-");
            }
        ' "$xml" 2>/dev/null || echo "- -"
    }
    snap() { echo "$(rss VmRSS) $(rss RssAnon) $(heap)"; }

    wait_answered() {  # total: every push answered
        local i
        for i in $(seq 1 300); do
            [ "$(stall_field answered)" -ge "$1" ] && return 0
            sleep 0.1
        done
        echo "memory: pushes not all answered: $(stall count), expected $1" >&2
        return 1
    }
    wait_held() {  # until the number held stops growing
        local prev=-1 cur i
        for i in $(seq 1 100); do
            cur=$(stall_field held)
            [ "$cur" = "$prev" ] && [ "$cur" -gt 0 ] && { echo "$cur"; return 0; }
            prev=$cur
            sleep 0.5
        done
        echo "$cur"
    }

    # warm-up: fast pushes, and a few slow ones answered at once
    stall release >/dev/null
    "${HELPER[@]}" wave "$MOD" "/eg?code=$SECRET" 20 1 1 1 c001 >/dev/null
    "${HELPER[@]}" wave "$MOD" "/eg-slow?code=$SECRET" 2 "$BATCH" 1 "$BATCH" c002 >/dev/null
    wait_answered $((2 * BATCH))
    stall hold >/dev/null
    sleep 1

    NREQ=$((MEM_N / BATCH))
    MEMN=$((NREQ * BATCH))
    ANSWERED=$((2 * BATCH))
    {
        printf 'pushes\t%s\n' "$MEMN"
        printf 'idle\t0\t%s\n' "$(snap | tr ' ' '\t')"
        for wave in $(seq 1 "$MEM_WAVES"); do
            st=$("${HELPER[@]}" wave "$MOD" "/eg-slow?code=$SECRET" "$NREQ" "$BATCH" 1 "$BATCH" \
                 "$(printf 'c%03x' $((wave + 2)))")
            [ "$st" = "202:$NREQ" ] || echo "memory wave $wave: statuses $st" >&2
            held=$(wait_held)
            sleep 0.5
            printf 'peak\t%s\t%s\t%s\n' "$wave" "$(snap | tr ' ' '\t')" "$held"
            stall release >/dev/null
            ANSWERED=$((ANSWERED + MEMN))
            wait_answered "$ANSWERED"
            stall hold >/dev/null
            sleep 1
            printf 'idle\t%s\t%s\n' "$wave" "$(snap | tr ' ' '\t')"
        done
    } >"$RUN/memory.tsv"
fi

# --- logs ------------------------------------------------------------------------

LOG=$RUN/module/logs/error.log
{
    log_levels module sink edge
    echo "module error.log: $(grep -c 'will be retried' "$LOG" || true) push retries," \
        "$(grep -c 'rejected the push' "$LOG" || true) pushes rejected," \
        "$(grep -c 'failed after' "$LOG" || true) pushes failed"
    echo "most frequent acs_notify and [warn]-or-worse module log lines (counts):"
    grep -E 'acs_notify|\[(warn|error|crit|alert|emerg)\]' "$LOG" \
        | sed -E 's/^[0-9\/: ]+//; s/[0-9]+#[0-9]+: (\*[0-9]+ )?//;
                 s/"[0-9a-f]{8}-[0-9a-f-]{27}"/"<id>"/g; s/ in [0-9]+ms/ in <n>ms/;
                 s/, client: .*//' \
        | sort | uniq -c | sort -rn | head -8 || true
} >"$RUN/logs.txt"

# --- summary -------------------------------------------------------------------

perl - "$RUN" "$DUR" "$CLK_TCK" "$BATCH" "$C1" "$C50" <<'PERL' | tee "$RUN/summary.txt"
use strict; use warnings;
my ($run, $dur, $hz, $batch, $c1, $c50) = @ARGV;
my %r;
open my $fh, '<', "$run/results.tsv" or die $!;
while (<$fh>) {
    chomp;
    my ($name, $rps, $reqs, $p99, $non2xx, $errs, $ticks, $sink, $ppr, $conns,
        $sticks, $wticks, $busy) = split /\t/;
    $r{$name} = { rps => $rps, reqs => $reqs, p99 => $p99, non2xx => $non2xx, errs => $errs,
                  cpu => $ticks / $hz, sink => $sink, ppr => $ppr, conns => $conns,
                  scpu => $sticks / $hz, wcpu => $wticks / $hz,
                  other => ($busy - $ticks - $sticks - $wticks) / $hz };
}
my (@idle, @peak, $memn);   # [vmrss, rssanon, heap in use, heap size (, held)] in kB
if (open my $m, '<', "$run/memory.tsv") {
    while (<$m>) {
        chomp;
        my ($k, @v) = split /\t/;
        if ($k eq 'pushes') { $memn = $v[0] }
        elsif ($k eq 'idle') { $idle[$v[0]] = [ @v[1 .. 4] ] }
        elsif ($k eq 'peak') { $peak[$v[0]] = [ @v[1 .. 5] ] }
    }
}

sub us_cpu { my $x = shift; $x->{reqs} ? 1e6 * $x->{cpu} / $x->{reqs} : 0 }
my $base = $r{baseline};
my $ebase = $r{edgebase};

print "\nDispatch benchmark: 1 nginx worker, wrk -t1, ${dur}s per case, loopback TLS sink\n";
printf "%-34s %8s %8s %8s %6s %4s %4s %4s %5s %8s %8s %8s\n",
    'case', 'deliv/s', 'pushes/s', 'p99 ms', 'non2xx', 'wkr%', 'snk%', 'wrk%', 'othr%',
    'us/deliv', 'rps/base', 'cpu/base';
my @rows = (
    [ baseline => "baseline return 200 (c=$c1)", $base ],
    [ single   => "(b) 1 event = 1 push, h2 (c=$c1)", $base ],
    [ single1  => "(b) 1 event = 1 push, h1.1 (c=$c1)", $base ],
    [ batch    => "(c) $batch events = $batch pushes, h2 (c=$c50)", $base ],
    [ batch1   => "(c) $batch events = $batch pushes, h1.1 (c=$c50)", $base ],
    [ nodevice => "1 event, recipient without device", $base ],
    [ edgebase => "edge nginx: return 200 (c=$c1)", $ebase ],
    [ edge     => "(d) edge only: no hub (c=$c1)", $ebase ],
);
for my $row (@rows) {
    my ($k, $label, $b) = @$row;
    my $x = $r{$k} or next;
    my $pushes = $x->{rps} * $x->{ppr};
    printf "%-34s %8.0f %8s %8.2f %6d %4.0f %4.0f %4.0f %5.0f %8.1f %8.3f %8.2f\n", $label, $x->{rps},
        ($x->{ppr} ? sprintf('%.0f', $pushes) : '-'), $x->{p99}, $x->{non2xx} + $x->{errs},
        100 * $x->{cpu} / $dur, 100 * $x->{scpu} / $dur, 100 * $x->{wcpu} / $dur,
        100 * ($x->{other} > 0 ? $x->{other} : 0) / $dur, us_cpu($x), $x->{rps} / $b->{rps}, us_cpu($x) / us_cpu($b);
}
print "\n";
for my $k (qw(single single1 batch batch1)) {
    my $x = $r{$k} or next;
    my $want = $x->{reqs} * $x->{ppr};
    my $cpp = $x->{cpu} / ($want || 1);
    printf "%-8s pushes counted by the sink: %d for %d answered deliveries x %d;"
         . " %.1f us worker CPU per push -> %.0f pushes per worker-CPU-second\n",
        $k, $x->{sink}, $x->{reqs}, $x->{ppr}, 1e6 * $cpp, $cpp ? 1 / $cpp : 0;
}
my %f;
if (open my $ff, '<', "$run/floor.tsv") {
    while (<$ff>) {
        chomp;
        my ($name, $n, $cpu, $wall, $failed) = split /\t/;
        $f{$name} = { n => $n, cpu => $cpu, wall => $wall, failed => $failed } if $n;
    }
}
for my $p ([ floor => 'single', 'h2' ], [ floor1 => 'single1', 'h1.1' ],
           [ lean => 'single1', 'h1.1' ]) {
    my ($k, $m, $proto) = @$p;
    my $x = $f{$k} or next;
    my $us = 1e6 * $x->{cpu} / $x->{n};
    my $y = $r{$m};
    printf "%-13s %-4s: %.0f transfers/s, %.1f us CPU per transfer -> %.0f per CPU-second"
         . "%s%s\n", ($k eq 'lean' ? 'lean (wrk),' : 'libcurl floor,'), $proto,
        $x->{n} / $x->{wall}, $us, 1e6 / $us,
        ($x->{failed} ? " ($x->{failed} FAILED)" : ''),
        ($y && $y->{reqs} ? sprintf('; the module spends %.2fx that per push (edge included)',
                                    us_cpu($y) / $y->{ppr} / $us) : '');
}
if (my $e = $r{edge}) {
    printf "edge bar (at most ~2x return 200): the edge path costs %.2fx the baseline's"
         . " worker CPU per request (%.2fx by throughput)\n",
        us_cpu($e) / us_cpu($ebase), $ebase->{rps} / $e->{rps};
}
my @busy = grep { $r{$_}{other} / $dur > 0.2 } sort keys %r;
if (@busy) {
    printf "WARNING: other processes used more than 20%% of a CPU during %s: throughput and"
         . " latency are disturbed (us/deliv and cpu/base much less)\n", join(', ', @busy);
}
if ($memn) {
    my $n = $#peak;
    printf "memory: %d pushes in flight at once (%s of them held by the stalled upstream, the rest"
         . " queued in curl), %d times\n", $memn, $peak[1][4], $n;
    printf "  worker VmRSS idle %d kB -> %d kB in flight: %.1f kB per push (RssAnon %.1f kB)\n",
        $idle[0][0], $peak[1][0], ($peak[1][0] - $idle[0][0]) / $memn,
        ($peak[1][1] - $idle[0][1]) / $memn;
    if ($idle[0][2] ne '-') {
        printf "  malloc in use (gdb malloc_info) idle %d kB -> %d kB in flight: %.1f kB per push;"
             . " heap %d kB at the peak\n", $idle[0][2], $peak[1][2],
            ($peak[1][2] - $idle[0][2]) / $memn, $peak[1][3];
        printf "  malloc in use once answered, wave after wave: %s kB (a leak would grow)\n",
            join(', ', map { $idle[$_][2] } 1 .. $n);
    }
    printf "  VmRSS kB, idle / in flight, wave after wave: %s\n",
        join(' | ', $idle[0][0], map { "$peak[$_][0] / $idle[$_][0]" } 1 .. $n);
    printf "  VmRSS at peak %d: %.1f kB per push in flight over the first idle\n",
        $n, ($peak[$n][0] - $idle[0][0]) / $memn;
}
open my $l, '<', "$run/logs.txt" or die $!;
print "\n", <$l>;
PERL
echo "(details: $RUN)"
