#!/usr/bin/env bash
# build.sh — install dependencies, build, run and test ngx_http_acs_notify_module.
#
#   ./build.sh [build]   install missing Debian packages (as root), build objs/*.so
#   ./build.sh run       build, then run nginx in the foreground on 127.0.0.1:8080
#                        with a local registry and a Notification Hubs stand-in
#   ./build.sh test      build, then run the whole test suite (prove -j2 -r t)
#   ./build.sh valgrind  the suite with nginx under valgrind memcheck
#   ./build.sh deps      only install the Debian packages
#
# Environment:
#   NGINX_SRC      an nginx source tree to build against (default: a copy of
#                  Debian's /usr/share/nginx/src, configured with its conf_flags)
#   NGINX_BIN      the nginx binary that loads the module (default /usr/sbin/nginx)
#   TEST_JOBS      parallel test files (default 2)

set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
BUILD="$ROOT/build"
MODULE=ngx_http_acs_notify_module
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}

# Build and test dependencies, all from Debian 12.
PACKAGES=(
    build-essential lmdb-utils nginx-core nginx-dev libyajl-dev liblmdb-dev
    libcurl4-openssl-dev libnghttp2-dev libssl-dev
    libpcre2-dev zlib1g-dev openssl curl
    libtest-base-perl libtext-diff-perl libtest-longstring-perl
    libipc-run-perl libhttp-message-perl liburi-perl liblist-moreutils-perl
    libio-socket-ssl-perl
)

log() { printf '==> %s\n' "$*" >&2; }

deps() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || missing+=("$p")
    done
    if [ "${1:-}" = test ]; then
        # the registration interop test runs Microsoft's own signing code
        command -v node >/dev/null 2>&1 || missing+=(nodejs)
        command -v npm >/dev/null 2>&1 || missing+=(npm)
    fi
    [ ${#missing[@]} -eq 0 ] && return 0

    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${missing[*]}"
        log "install them with: sudo apt-get install ${missing[*]}"
        exit 1
    fi

    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Configure a private copy of the nginx source once; reconfigure only when the
# addon script or the nginx tree changes.
configure() {
    local src stamp want
    if [ -n "${NGINX_SRC:-}" ]; then
        src=$(cd "$NGINX_SRC" && pwd)
        want="custom $src"
    else
        [ -f /usr/share/nginx/src/conf_flags ] || {
            log "/usr/share/nginx/src missing: install nginx-dev or set NGINX_SRC"
            exit 1
        }
        src="$BUILD/nginx-src"
        want="debian $(dpkg-query -W -f='${Version}' nginx-dev)"
        if [ ! -f "$src/.acs-copied" ] || ! grep -qxF "$want" "$src/.acs-copied"; then
            rm -rf "$src"
            mkdir -p "$BUILD"
            cp -a /usr/share/nginx/src "$src"
            echo "$want" >"$src/.acs-copied"
        fi
    fi

    stamp="$want $(sha1sum "$ROOT/config" | cut -d' ' -f1)"
    if [ -f "$src/objs/Makefile" ] && [ -f "$src/.acs-configured" ] \
       && grep -qxF "$stamp" "$src/.acs-configured"; then
        echo "$src"
        return
    fi

    log "configuring nginx in $src"
    local flags=()
    if [ -z "${NGINX_SRC:-}" ]; then
        # shellcheck disable=SC1091
        . "$src/conf_flags"
        flags=("${NGX_CONF_FLAGS[@]}")
    else
        flags=(--with-compat --with-debug --with-http_ssl_module --with-threads)
    fi
    (cd "$src" && ./configure "${flags[@]}" --add-dynamic-module="$ROOT" >"$BUILD/configure.log" 2>&1) || {
        tail -30 "$BUILD/configure.log" >&2
        exit 1
    }
    echo "$stamp" >"$src/.acs-configured"
    echo "$src"
}

build() {
    deps
    mkdir -p "$BUILD" "$ROOT/objs"
    local src
    src=$(configure)
    make -s -C "$src" -f objs/Makefile modules >"$BUILD/make.log" 2>&1 || {
        cat "$BUILD/make.log" >&2
        exit 1
    }
    if ! cmp -s "$src/objs/$MODULE.so" "$ROOT/objs/$MODULE.so"; then
        # a new file, renamed into place: nginx processes that have the old
        # one mapped keep it intact
        cp "$src/objs/$MODULE.so" "$ROOT/objs/.$MODULE.so.tmp"
        mv -f "$ROOT/objs/.$MODULE.so.tmp" "$ROOT/objs/$MODULE.so"
        log "built objs/$MODULE.so"
    fi
}

run() {
    build
    local dir="$BUILD/run" secret key nhport port bob
    mkdir -p "$dir/logs" "$dir/conf" "$dir/tmp" "$dir/nh"
    [ -s "$dir/conf/eg-secret" ] || openssl rand -hex 16 >"$dir/conf/eg-secret"
    [ -s "$dir/conf/access.key" ] || openssl rand -base64 32 >"$dir/conf/access.key"
    secret=$(cat "$dir/conf/eg-secret")
    key=$(cat "$dir/conf/access.key")

    # the Notification Hubs stand-in, in the background
    nhport=${NH_PORT:-8443}
    port=${PORT:-8080}
    perl "$ROOT/t/lib/fake-nh" --dir "$dir/nh" --port "$nhport" \
        --hub acs-push >"$dir/logs/fake-nh.out" 2>&1 &
    # the pid is expanded now: the trap runs after run() has returned
    # shellcheck disable=SC2064
    trap "kill $! 2>/dev/null" EXIT
    for _ in $(seq 1 100); do
        grep -q '^connection string:' "$dir/logs/fake-nh.out" 2>/dev/null && break
        sleep 0.1
    done
    sed -n 's/^connection string: //p' "$dir/logs/fake-nh.out" >"$dir/conf/nh.conn"
    [ -s "$dir/conf/nh.conn" ] || { cat "$dir/logs/fake-nh.out" >&2; exit 1; }

    sed -e "s|@MODULE@|$ROOT/objs/$MODULE.so|g" \
        -e "s|@RUN@|$dir|g" -e "s|@NHPORT@|$nhport|g" -e "s|@PORT@|$port|g" \
        "$ROOT/docs/run.conf" >"$dir/conf/nginx.conf"
    "$NGINX_BIN" -p "$dir" -c "$dir/conf/nginx.conf" -t -q

    bob='8%3Aacs%3A109f0644-b956-4cd9-87b1-71024f6e2f44_00000008-578d-7d05-83fe-084822000f6d'
    cat <<EOF

nginx with $MODULE starts on http://127.0.0.1:$port (Ctrl-C stops
it), with a local registry and a Notification Hubs stand-in on 127.0.0.1:$nhport
as its hub (PORT= and NH_PORT= choose other ports).

1. Register Bob's phone (a request signed like ACS's own REST calls):

  $ROOT/tools/acs-curl '$key' PUT \\
      'http://127.0.0.1:$port/acs/users/$bob/devices/demo-phone' \\
      '{"platform":"fcmv1","handle":"demo-fcm-token"}'

2. Deliver a chat message for Bob, as Event Grid does:

  curl -i -H 'aeg-event-type: Notification' -H 'Content-Type: application/json' \\
      -H 'X-EventGrid-Secret: $secret' \\
      --data-binary @$ROOT/t/data/events/eg-chat-message-received.json \\
      'http://127.0.0.1:$port/eventgrid'

3. See the push the stand-in received:

  tail -n 1 $dir/nh/journal.jsonl

EOF
    "$NGINX_BIN" -p "$dir" -c "$dir/conf/nginx.conf" -g 'daemon off;'
}

tests() {
    deps test
    build
    cd "$ROOT"
    export TEST_NGINX_BINARY="$NGINX_BIN"
    export TEST_NGINX_LOAD_MODULES="$ROOT/objs/$MODULE.so"
    export TEST_NGINX_SERVROOT="$ROOT/t/servroot"
    if [ ! -d t/node_modules/@azure/communication-common ]; then
        log "installing the test's npm packages (t/package-lock.json)"
        npm ci --prefix t --no-audit --no-fund --loglevel=error >/dev/null
    fi
    rm -rf "$TEST_NGINX_SERVROOT"
    prove -I "$ROOT/t/lib" -j "${TEST_JOBS:-2}" -r t "$@"
}

# the whole suite with nginx under valgrind memcheck; prints every report
# that names an error or a definite leak
valgrind_tests() {
    deps test
    build
    command -v valgrind >/dev/null || apt-get install -y -qq valgrind >/dev/null
    cd "$ROOT"
    export VALGRIND_DIR="$BUILD/valgrind"
    rm -rf "$VALGRIND_DIR"
    export TEST_NGINX_BINARY="$ROOT/t/valgrind-nginx"
    export TEST_NGINX_LOAD_MODULES="$ROOT/objs/$MODULE.so"
    export TEST_NGINX_SERVROOT="$ROOT/t/servroot"
    rm -rf "$TEST_NGINX_SERVROOT"
    prove -I "$ROOT/t/lib" -j "${TEST_JOBS:-2}" -r t "$@" || true
    local bad
    bad=$(grep -lE "Invalid (read|write|free)|uninitialised|Jump to|definitely lost" \
          "$VALGRIND_DIR"/*.log 2>/dev/null || true)
    echo "valgrind: $(ls "$VALGRIND_DIR" | wc -l) process reports, $(echo -n "$bad" | grep -c .) with errors or definite leaks"
    for f in $bad; do echo "== $f"; sed -n 1,40p "$f"; done
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
    deps)  deps ;;
    build) build ;;
    run)   run ;;
    test)  tests "$@" ;;
    valgrind) valgrind_tests "$@" ;;
    *)     echo "usage: $0 [deps|build|run|test|valgrind]" >&2; exit 2 ;;
esac
