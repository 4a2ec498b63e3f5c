#!/usr/bin/env bash
# The distant Notification Hubs stand-in (t/lib/distant-hub.mjs) under h2load:
# how many pushes per second one Node process answers, and its CPU per push,
# so that a benchmark of the module knows when the stand-in, not nginx, is
# the limit.  No nginx involved.
#
#   bench/distant-hub.sh        (needs node and h2load: apt-get install nghttp2-client)
#
# Environment: N (requests per case, 200000), PIN (1: stand-in on CPU 1,
# h2load on CPU 0), NODE (node), CASES (the names below, all by default).
#
# Cases (every request a valid 463-byte APNs direct send, checked in full):
#   h2-d0      HTTP/2, delay 0, h2load -c 8 -m 100
#   h2-d150    HTTP/2, delay 150 ms, -c 25 -m 100: 2,500 in flight
#   h1-d0      HTTP/1.1, delay 0, -c 64
#   h1-d150    HTTP/1.1, delay 150 ms, -c 2500: 2,500 connections in flight
# Per case: h2load's requests/s and status codes, the stand-in's CPU over
# the run (user+system, all its threads) as a share of one core and in
# microseconds per request, the load average (other processes on the
# machine skew every number here).

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/distant-hub
N=${N:-200000}
PIN=${PIN:-1}
NODE=${NODE:-node}
CASES=${CASES:-h2-d0 h2-d150 h1-d0 h1-d150}
KEY=ZGlzdGFudC1odWItYmVuY2gta2V5LW5vdC1yZWFs
HOST=acs-test-ns.servicebus.windows.net

command -v h2load >/dev/null || { echo "h2load is needed: apt-get install nghttp2-client" >&2; exit 1; }

rm -rf "$RUN"
mkdir -p "$RUN"
CA_DIR=$(perl -I"$ROOT/t/lib" -MAcsTest::FakeNH -e 'print AcsTest::FakeNH::setup_ca($ARGV[0])->{ca} =~ s{/ca\.pem$}{}r' "$RUN/ca")
TOKEN=$(perl -I"$ROOT/t/lib" -MAcsTest::FakeNH -e \
    'print AcsTest::FakeNH::sas_token("send", $ARGV[0], "https://$ARGV[1]/acs-push", time + 7200)' "$KEY" "$HOST")
printf '%s' '{"aps":{"alert":{"title":"Alice","body":"Are we still on for 3pm?"},"sound":"default","thread-id":"19:6e5d6ca1d75044a49a36a7965ec4a906@thread.v2","mutable-content":1},"acs":{"eventId":"02272459-badb-4e2e-b538-4cb8a2f71da6","eventType":"Microsoft.Communication.ChatMessageReceived","threadId":"19:6e5d6ca1d75044a49a36a7965ec4a906@thread.v2","messageId":"1749720358927","senderId":"8:acs:109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7caf-07fd-084822001724"}}' >"$RUN/body.json"

HUB_AFF=() LOAD_AFF=()
if [ "$PIN" = 1 ] && [ "$(nproc)" -ge 2 ]; then
    HUB_AFF=(taskset -c 1)
    LOAD_AFF=(taskset -c 0)
fi

"${HUB_AFF[@]}" "$NODE" "$ROOT/t/lib/distant-hub.mjs" \
    --cert "$CA_DIR/server.pem" --cert-key "$CA_DIR/server.key" --key "$KEY" \
    --key-name send --hub acs-push --ready-file "$RUN/ready.json" 2>"$RUN/distant-hub.log" &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do [ -e "$RUN/ready.json" ] && break; sleep 0.1; done
read -r PORT CTL < <(perl -MJSON::PP -0777 -ne '$r = decode_json($_); print "$r->{port} $r->{control_port}\n"' "$RUN/ready.json")

ctl() { curl -s -X POST "http://127.0.0.1:$CTL/$1" ${2:+-d "$2"} >/dev/null; }
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }    # clock ticks (1/100 s)

printf '%-8s %-22s %9s %8s %8s %8s  %s\n' case h2load req/s 2xx cpu% 'us/req' load
for c in $CASES; do
    case $c in
        h2-d0)   delay=0   args=(-c 8 -m 100) ;;
        h2-d150) delay=150 args=(-c 25 -m 100) ;;
        h1-d0)   delay=0   args=(--h1 -c 64 -m 1) ;;
        h1-d150) delay=150 args=(--h1 -c 2500 -m 1) ;;
        *) echo "unknown case $c" >&2; exit 1 ;;
    esac
    ctl mode "{\"delay\":$delay}"
    ctl reset
    c0=$(cpu) t0=$(date +%s.%N)
    "${LOAD_AFF[@]}" h2load -n "$N" "${args[@]}" --connect-to "127.0.0.1:$PORT" \
        -H "Authorization: $TOKEN" -H 'x-ms-version: 2020-06' \
        -H 'ServiceBusNotification-Format: apple' \
        -H 'ServiceBusNotification-DeviceHandle: abcdef0123456789abcdef0123456789' \
        -H 'Content-Type: application/json;charset=utf-8' \
        -H 'apns-push-type: alert' -H 'apns-priority: 10' -d "$RUN/body.json" \
        "https://$HOST/acs-push/messages/?api-version=2020-06&direct" >"$RUN/$c.txt" 2>&1
    c1=$(cpu) t1=$(date +%s.%N)
    curl -s "http://127.0.0.1:$CTL/stats" >"$RUN/$c.stats.json"
    rps=$(awk '/^finished in/ {print $4}' "$RUN/$c.txt")
    st=$(awk '/^status codes:/ {print $3}' "$RUN/$c.txt")
    awk -v c="$c" -v a="${args[*]}" -v r="$rps" -v s="$st" -v d="$((c1 - c0))" \
        -v t0="$t0" -v t1="$t1" -v n="$N" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" \
        'BEGIN { printf "%-8s %-22s %9s %8s %8.0f %8.0f  %s\n", c, a, r, s, d / (t1 - t0), d * 10000 / n, l }'
done
echo "details: $RUN/*.txt (h2load), $RUN/*.stats.json (the stand-in's counters and timeline)"
