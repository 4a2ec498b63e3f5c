#!/usr/bin/env bash
# Coverage-guided fuzzing of the module's parsers with libFuzzer (clang),
# AddressSanitizer and UndefinedBehaviorSanitizer:
#   event    the Event Grid / CloudEvents streaming parser (ngx_acs_event.c)
#   parsers  connection strings, strict base64url, JSON trees (JWT, JWKS,
#            registration bodies)
#
#   bench/fuzz.sh [SECONDS per target, default 60]
# Needs clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)
# and a configured tree (./build.sh build).  Corpora and crashes go to
# bench/results/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
tree=${ACS_NGINX_TREE:-build/nginx-src}
out=bench/results/fuzz
mkdir -p "$out"
inc="-I$tree/src/core -I$tree/src/event -I$tree/src/event/modules -I$tree/src/os/unix -I$tree/objs -Ingx_acs_notify_module"

declare -A srcs=(
    [event]="t/unit/event_fuzz.c ngx_acs_notify_module/ngx_acs_event.c ngx_acs_notify_module/ngx_acs_json.c"
    [parsers]="t/unit/parsers_fuzz.c ngx_acs_notify_module/ngx_acs_json.c ngx_acs_notify_module/ngx_acs_sas.c"
)

for t in event parsers; do
    # shellcheck disable=SC2086
    clang -g -O1 -fsanitize=fuzzer,address,undefined -DNGX_ACS_FUZZ $inc \
        t/unit/ngx_shim.c t/unit/fuzz_main.c ${srcs[$t]} -lyajl -lcrypto -o "$out/$t-fuzz"
    mkdir -p "$out/$t-corpus"
    cp t/data/events/*.json "$out/$t-corpus/"
    echo "== $t: ${secs}s"
    "$out/$t-fuzz" -max_total_time="$secs" -max_len=65536 \
        -artifact_prefix="$out/$t-" "$out/$t-corpus" 2>&1 \
        | grep -E '^Done|ERROR|SUMMARY|crash-' || true
done
ls "$out" | grep -E 'crash-|leak-|oom-' && { echo "findings above"; exit 1; }
echo "no crash, leak or sanitizer report"
