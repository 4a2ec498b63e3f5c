#!/usr/bin/env bash
# Coverage-guided fuzzing of the module's parsers with libFuzzer (clang),
# AddressSanitizer and UndefinedBehaviorSanitizer:
#   event    the Event Grid / CloudEvents streaming parser (ngx_acs_event.c)
#   parsers  connection strings, strict base64url, JSON trees (JWT, JWKS,
#            registration bodies)
#   regpath  the registration API's path decoder (ngx_acs_regpath.c)
#   hmac     the registration API's HMAC-SHA256 signing (ngx_acs_hmac.c)
#   render   routing, messages, the payload renderers and templates
#            (ngx_acs_route.c, ngx_acs_render.c, ngx_acs_template.c), on
#            parsed events
#
#   bench/fuzz.sh [SECONDS per target, default 60] [TARGET...]
# Needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)
# and a configured tree (./build.sh build).  Corpora and crashes go to
# bench/results/fuzz/.  On a shared machine: nice -n 19 taskset -c 0 ...
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(event parsers regpath hmac render)
# the tree the module was built against, and its include directories (as
# t/004 and t/006 find them: t/lib/AcsTest/Tree.pm)
inc=$(perl -It/lib -MAcsTest::Tree -e '
    my $t = AcsTest::Tree::find() or die "no configured nginx tree: run ./build.sh build first\n";
    print STDERR "nginx $t->{version} tree $t->{path}\n";
    print $t->{cflags}')
inc="$inc -Ingx_acs_notify_module"
out=bench/results/fuzz
mkdir -p "$out"
m=ngx_acs_notify_module

declare -A srcs=(
    [event]="t/unit/event_fuzz.c $m/ngx_acs_event.c $m/ngx_acs_time.c $m/ngx_acs_json.c $m/ngx_acs_crypto.c"
    [parsers]="t/unit/parsers_fuzz.c $m/ngx_acs_json.c $m/ngx_acs_sas.c"
    [regpath]="t/unit/regpath_fuzz.c $m/ngx_acs_regpath.c"
    [hmac]="t/unit/hmac_fuzz.c $m/ngx_acs_hmac.c $m/ngx_acs_crypto.c"
    [render]="t/unit/render_fuzz.c $m/ngx_acs_render.c $m/ngx_acs_route.c $m/ngx_acs_template.c $m/ngx_acs_shape.c $m/ngx_acs_platform.c $m/ngx_acs_event.c $m/ngx_acs_json.c $m/ngx_acs_crypto.c"
)

# seeds: the sample events, and for the small parsers inputs of their own
seed() {
    local t=$1 dir=$2 f
    case $t in
    regpath)
        printf 'users/8%%3Aacs%%3Ares_user-1/devices/phone-1' >"$dir/seed-1"
        printf 'users/4%%3A%%2B14255550123/devices' >"$dir/seed-2"
        printf 'users/a%%2Fb' >"$dir/seed-3"
        ;;
    hmac)
        printf 'PUT\n/acs/users/u/devices/d?x=1\nThu, 04 Dec 2025 10:00:00 GMT\nlocalhost:8080\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\nHMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=AAAA' >"$dir/seed-1"
        ;;
    render)
        cp t/data/events/*.json "$dir/"
        for f in t/data/events/eg-chat-message-received.json t/data/events/eg-incoming-call.json; do
            { cat "$f"; printf '\0\0\0{"aps":{"alert":{"title":"${data.senderDisplayName}","body":"${body}"}},"x":"${data.to.rawId}"}'; } \
                >"$dir/tpl-apns-$(basename "$f")"
            { cat "$f"; printf '\0\0\3<toast><visual><binding template="ToastGeneric"><text>${title}</text></binding></visual></toast>'; } \
                >"$dir/tpl-wns-$(basename "$f")"
        done
        # an incoming call whose context nests past the limit
        perl -pe 's/"incomingCallContext": "[^"]*"/"incomingCallContext": "eyJhbGciOiJub25lIn0.W1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW1tbW11dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXV1dXQ."/' \
            t/data/events/eg-incoming-call.json >"$dir/call-deep-context.json"
        ;;
    parsers)
        cp t/data/events/*.json "$dir/"
        # nesting at the limit and past it, and many values
        perl -e 'print "{\"keys\":[", "[" x 31, "]" x 31, "]}"' >"$dir/deep-32"
        perl -e 'print "[" x 33, "]" x 33' >"$dir/deep-33"
        perl -e 'print "[" x 30000, "]" x 30000' >"$dir/deep-30000"
        perl -e 'print "[", join(",", ("{}") x 16000), "]"' >"$dir/wide-16000"
        ;;
    *)
        cp t/data/events/*.json "$dir/"
        ;;
    esac
}

for t in "${targets[@]}"; do
    [ -n "${srcs[$t]:-}" ] || { echo "unknown target $t" >&2; exit 2; }
    # shellcheck disable=SC2086
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -DNGX_ACS_FUZZ $inc \
        t/unit/ngx_shim.c t/unit/fuzz_main.c ${srcs[$t]} -lyajl -lcrypto -o "$out/$t-fuzz"
    mkdir -p "$out/$t-corpus"
    seed "$t" "$out/$t-corpus"
    echo "== $t: ${secs}s"
    "$out/$t-fuzz" -max_total_time="$secs" -max_len=65536 \
        -artifact_prefix="$out/$t-" "$out/$t-corpus" 2>&1 \
        | grep -E '^Done|ERROR|SUMMARY|crash-' || true
done
ls "$out" | grep -E 'crash-|leak-|oom-|timeout-' && { echo "findings above"; exit 1; }
echo "no crash, leak or sanitizer report"
