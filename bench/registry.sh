#!/usr/bin/env bash
# Registry benchmark: the cost of a device lookup (GET of one registration)
# and of a registration write (PUT, committed and synced), each measured
# with wrk against the same nginx as a baseline "return 200" location, so
# that the difference per request is the registry's own cost.
#
#   bench/registry.sh            (after ./build.sh build; needs wrk)

set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/bench/results/registry
NGINX=${NGINX_BIN:-/usr/sbin/nginx}
PORT=${PORT:-18480}
DUR=${DUR:-5}
KEY=dGVzdC1hY2Nlc3Mta2V5LTAxMjM0NTY3ODlhYmNkZWY=

command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }

rm -rf "$RUN"; mkdir -p "$RUN/logs" "$RUN/conf" "$RUN/tmp"
cat >"$RUN/conf/nginx.conf" <<CONF
load_module $ROOT/objs/ngx_http_acs_notify_module.so;
worker_processes 1;
error_log $RUN/logs/error.log warn;
pid $RUN/logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $RUN/tmp;
    acs_notify_registry $RUN/registry;
    server {
        listen 127.0.0.1:$PORT;
        location = /baseline { return 200 '{"value":[]}'; }
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $KEY;
        }
    }
}
CONF
"$NGINX" -p "$RUN" -c "$RUN/conf/nginx.conf"
trap '"$NGINX" -p "$RUN" -c "$RUN/conf/nginx.conf" -s quit' EXIT
sleep 0.5

# a wrk script sending one signed request (valid for the 5 minutes of x-ms-date)
script() {
    local method=$1 path=$2 body=${3-}
    perl -I"$ROOT/t/lib" -MAcsTest::Hmac -e '
        my ($m, $p, $b, $k, $port) = @ARGV;
        my $h = AcsTest::Hmac::sign(method => $m, path => $p, body => $b,
                                    key => $k, host => "127.0.0.1:$port");
        (my $bb = $b) =~ s/(["\\])/\\$1/g;
        print "wrk.method = \"$m\"\n";
        print "wrk.body = \"$bb\"\n" if length $b;
        print "wrk.headers[\"Content-Type\"] = \"application/json\"\n" if length $b;
        for (qw(x-ms-date x-ms-content-sha256 Authorization)) {
            print "wrk.headers[\"$_\"] = \"$h->{$_}\"\n";
        }' "$method" "$path" "$body" "$KEY" "$PORT"
}

U=/acs/users/8%3Aacs%3Abench-user
BODY='{"platform":"fcmv1","handle":"bench-token-0123456789"}'
script PUT "$U/devices/d1" "$BODY" >"$RUN/put.lua"
script GET "$U/devices/d1" >"$RUN/get.lua"

# 1,000 users with 3 devices each, so that lookups walk a real B-tree
for i in $(seq 1 1000); do
    for d in 1 2 3; do
        p="/acs/users/8%3Aacs%3Afill-$i/devices/d$d"
        script PUT "$p" "$BODY" >/dev/null
    done
done >/dev/null
perl -I"$ROOT/t/lib" -MAcsTest::Hmac -MIO::Socket::INET -e '
    my ($k, $port, $body) = @ARGV;
    for my $i (1 .. 1000) { for my $d (1 .. 3) {
        my $p = "/acs/users/8%3Aacs%3Afill-$i/devices/d$d";
        my $h = AcsTest::Hmac::sign(method => "PUT", path => $p, body => $body,
                                    key => $k, host => "127.0.0.1:$port");
        my $s = IO::Socket::INET->new("127.0.0.1:$port") or die;
        print $s "PUT $p HTTP/1.1\r\nHost: 127.0.0.1:$port\r\nConnection: close\r\n"
          . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n"
          . join("", map { "$_: $h->{$_}\r\n" } qw(x-ms-date x-ms-content-sha256 Authorization))
          . "\r\n$body";
        local $/; <$s>;
    } }' "$KEY" "$PORT" "$BODY"
curl -s -o /dev/null -X PUT "http://127.0.0.1:$PORT$U/devices/d1" || true
wrk -t1 -c1 -d1s -s "$RUN/put.lua" "http://127.0.0.1:$PORT$U/devices/d1" >/dev/null

run() {  # name, wrk args...: prints requests/s and mean latency in microseconds
    local name=$1; shift
    local out rps lat
    out=$(wrk -t1 "$@" 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    echo "$out" >"$RUN/$name.txt"
    printf '%-10s %12s req/s\n' "$name" "$rps"
    echo "$rps"
}

echo "== reads: 1 worker, 8 connections, ${DUR}s each"
base=$(run baseline -c8 -d"${DUR}s" "http://127.0.0.1:$PORT/baseline" | tail -1)
get=$(run lookup -c8 -d"${DUR}s" -s "$RUN/get.lua" "http://127.0.0.1:$PORT$U/devices/d1" | tail -1)
echo "== writes: 1 connection (each PUT is one committed, synced transaction)"
put=$(run write -c1 -d"${DUR}s" -s "$RUN/put.lua" "http://127.0.0.1:$PORT$U/devices/d1" | tail -1)

perl -e '
    my ($b, $g, $p) = @ARGV;
    printf "baseline return 200: %.1f us/request\n", 1e6 / $b;
    printf "signed GET of one registration: %.1f us/request (%.2fx the baseline);\n", 1e6 / $g, $b / $g;
    printf "  registry lookup + HMAC check + JSON answer cost %.1f us more than the baseline\n", 1e6 / $g - 1e6 / $b;
    printf "signed PUT (committed, fsync): %.0f us/request, %.0f writes/s on one connection\n", 1e6 / $p, $p;
' "$base" "$get" "$put" | tee "$RUN/summary.txt"
