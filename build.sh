#!/usr/bin/env bash
# build.sh — install dependencies, build, run, test and package
# ngx_http_acs_notify_module.
#
#   ./build.sh [build]        install missing Debian packages (as root), build
#                             objs/ngx_http_acs_notify_module.so
#   ./build.sh run            build, then run nginx in the foreground on
#                             127.0.0.1:8080 with a local registry and a
#                             Notification Hubs stand-in
#   ./build.sh test [FILE...] build, then run the whole suite (prove -r t),
#                             or only the test files given
#   ./build.sh matrix [VERSION...]
#                             for each nginx version of Debian's releases
#                             (default: every one their source indexes list):
#                             fetch the release tarball from the Debian
#                             archive, check it against the archive's
#                             SHA-256, build nginx --with-compat and the
#                             module against it, run the whole suite with
#                             that binary (docs/operations.md, section 10)
#   ./build.sh debian SUITE [COMMAND...]
#                             a fresh Debian SUITE (bookworm, trixie, sid)
#                             made with debootstrap under build/debian/, with
#                             its own packaged nginx, nodejs and npm; runs
#                             `./build.sh COMMAND` (default: test) on a copy
#                             of this checkout inside it
#   ./build.sh deb            the Debian package libnginx-mod-http-acs-notify
#                             (build/deb/*.deb), for Debian's packaged nginx
#   ./build.sh deb-check      build the package, install it with apt-get,
#                             nginx -t with docs/nginx.conf and the module's
#                             snippet enabled, remove and purge it, check
#                             nothing is left (changes the system: CI runs
#                             it in `./build.sh debian bookworm deb-check`)
#   ./build.sh fetch VERSION  only fetch and check that release tarball
#                             (prints its path under build/matrix/dl/)
#   ./build.sh knobs          checks that the knobs below do what they say
#                             (.ci/knobs)
#   ./build.sh valgrind [FILE...]
#                             the suite (or the files given) with nginx
#                             under valgrind memcheck
#   ./build.sh deps           only install the Debian packages
#
# Environment:
#   NGINX_SRC    the nginx to build against: a release tarball
#                (nginx-1.26.3.tar.gz), an unpacked release (./configure) or
#                a source checkout (auto/configure).  It is copied to
#                build/nginx-src and configured there with NGINX_FLAGS;
#                `test`, `run` and `valgrind` build its nginx binary too and
#                run that unless NGINX_BIN says otherwise.  Default: Debian's nginx-dev tree
#                (/usr/share/nginx/src) with the packaged binary's flags
#                (its conf_flags), so the module loads into /usr/sbin/nginx.
#   NGINX_FLAGS  configure flags for NGINX_SRC (default: --with-compat and
#                the modules the suite uses, see DEFAULT_FLAGS below)
#   NGINX_BIN    the nginx that loads the module and runs the tests
#                (default: /usr/sbin/nginx, or the binary built from
#                NGINX_SRC).  TEST_NGINX_BINARY is the same knob: either
#                may be set, both only to the same path.
#   CC, CFLAGS   read by nginx's configure; part of the build stamp
#   TEST_JOBS    test files run in parallel (default 2)
#   DEBIAN_MIRROR  the Debian archive for `matrix` and `debian` (default:
#                the one this machine's apt uses)
#
# What a build used is in build/nginx-tree (the configured tree, its
# version, the binary to test); the stamp of a tree is its .acs-configured.
# The C unit tests (t/004 to t/008) compile against that tree (or
# ACS_NGINX_TREE) and say which.

set -euo pipefail

ROOT=$(cd "$(dirname "$0")" && pwd)
BUILD="$ROOT/build"
MODULE=ngx_http_acs_notify_module
PKG=libnginx-mod-http-acs-notify

# one knob for the binary under test, under either name
if [ -n "${NGINX_BIN:-}" ] && [ -n "${TEST_NGINX_BINARY:-}" ] \
   && [ "$NGINX_BIN" != "$TEST_NGINX_BINARY" ]; then
    echo "NGINX_BIN=$NGINX_BIN and TEST_NGINX_BINARY=$TEST_NGINX_BINARY" \
         "differ: set one of them" >&2
    exit 2
fi
NGINX_BIN=${NGINX_BIN:-${TEST_NGINX_BINARY:-}}

# configure flags for a tree other than Debian's: what the suite needs
# (TLS, HTTP/2 for the hub stand-ins, auth_request and auth_basic for the
# WWW-Authenticate tests, the stream module for the harness's own test)
DEFAULT_FLAGS=(
    --with-compat --with-debug --with-threads --with-pcre-jit
    --with-http_ssl_module --with-http_v2_module
    --with-http_auth_request_module --with-http_realip_module
    --with-http_stub_status_module --with-stream=dynamic
)

# Build and test dependencies, all from Debian.
PACKAGES=(
    build-essential lmdb-utils nginx-core nginx-dev libnginx-mod-stream
    libyajl-dev liblmdb-dev libcurl4-openssl-dev libnghttp2-dev libssl-dev
    libpcre2-dev zlib1g-dev openssl curl ca-certificates procps
    libtest-base-perl libtext-diff-perl libtest-longstring-perl
    libipc-run-perl libhttp-message-perl liburi-perl liblist-moreutils-perl
    libio-socket-ssl-perl
)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

install_packages() {
    [ $# -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: $*"
        log "install them with: sudo apt-get install $*"
        exit 1
    fi
    log "installing $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' \
            || echo "$p"
    done
}

deps() {
    local missing=()
    mapfile -t missing < <(missing_packages "${PACKAGES[@]}")
    if [ "${1:-}" = test ]; then
        # the registration interop test runs Microsoft's own signing code:
        # Debian's nodejs (18 on Debian 12) and npm will do
        command -v node >/dev/null 2>&1 || missing+=(nodejs)
        command -v npm >/dev/null 2>&1 || missing+=(npm)
    fi
    install_packages "${missing[@]}"
}

# --- the nginx tree

# What identifies the source: Debian's nginx-dev version, a tarball's
# SHA-256, or the SHA-1 of every file of a directory (objs/ and the
# Makefile left out).
source_id() {
    local src=$1
    if [ -f "$src" ]; then
        echo "tarball $src $(sha256sum "$src" | cut -d' ' -f1)"
    else
        echo "tree $src $(cd "$src" && find . \( -path ./objs -o -path ./.git \
            -o -path ./.hg -o -path ./Makefile \) -prune -o -type f -print0 \
            | LC_ALL=C sort -z | xargs -0 sha1sum | sha1sum | cut -d' ' -f1)"
    fi
}

# copy (or unpack) SRC into DEST unless DEST already holds that source
copy_tree() {
    local src=$1 dest=$2 id
    id=$(source_id "$src")
    if [ -f "$dest/.acs-copied" ] && grep -qxF "$id" "$dest/.acs-copied"; then
        return
    fi
    rm -rf "$dest"
    mkdir -p "$dest"
    if [ -f "$src" ]; then
        tar -xf "$src" -C "$dest" --strip-components=1 \
            || die "$src: not an nginx release tarball"
    else
        tar -C "$src" --exclude=./objs --exclude=./Makefile --exclude=./.git \
            --exclude=./.hg -cf - . | tar -C "$dest" -xf -
    fi
    [ -f "$dest/src/core/nginx.h" ] || die "$src: no src/core/nginx.h, not an nginx tree"
    echo "$id" >"$dest/.acs-copied"
}

tree_version() {
    sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$1/src/core/nginx.h"
}

# Copies and configures the tree the module is built against; prints its
# path.  Reconfigures when anything that changes the output changed: the
# source, this checkout's path and its config script, the flags, CC and
# CFLAGS.  $1: the directory for the copy.
configure() {
    local dest=$1 src want stamp conf
    local flags=()
    if [ -n "${NGINX_SRC:-}" ]; then
        [ -e "$NGINX_SRC" ] || die "NGINX_SRC=$NGINX_SRC does not exist"
        src=$(realpath "$NGINX_SRC")
        copy_tree "$src" "$dest"
        if [ -n "${NGINX_FLAGS:-}" ]; then
            read -r -a flags <<<"$NGINX_FLAGS"
        else
            flags=("${DEFAULT_FLAGS[@]}")
        fi
    else
        [ -f /usr/share/nginx/src/conf_flags ] \
            || die "/usr/share/nginx/src missing: install nginx-dev or set NGINX_SRC"
        want="debian $(dpkg-query -W -f='${Version}' nginx-dev)"
        if [ ! -f "$dest/.acs-copied" ] || ! grep -qxF "$want" "$dest/.acs-copied"; then
            rm -rf "$dest"
            mkdir -p "$(dirname "$dest")"
            cp -a /usr/share/nginx/src "$dest"
            echo "$want" >"$dest/.acs-copied"
        fi
        # shellcheck disable=SC1091
        . "$dest/conf_flags"
        flags=("${NGX_CONF_FLAGS[@]}")
    fi

    stamp=$(printf '%s\n' "source: $(cat "$dest/.acs-copied")" \
        "checkout: $ROOT" "config: $(sha1sum "$ROOT/config" | cut -d' ' -f1)" \
        "flags: ${flags[*]}" "cc: ${CC:-}" "cflags: ${CFLAGS:-}")
    if [ -f "$dest/objs/Makefile" ] && [ -f "$dest/.acs-configured" ] \
       && [ "$(cat "$dest/.acs-configured")" = "$stamp" ]; then
        echo "$dest"
        return
    fi

    # a release has ./configure, a source checkout auto/configure
    if [ -x "$dest/configure" ]; then
        conf=./configure
    elif [ -f "$dest/auto/configure" ]; then
        conf=auto/configure
    else
        die "$dest: neither ./configure nor auto/configure"
    fi
    log "configuring nginx $(tree_version "$dest") in $dest ($conf)"
    rm -f "$dest/.acs-configured"
    (cd "$dest" && sh $conf "${flags[@]}" --add-dynamic-module="$ROOT") \
        >"$dest/configure.log" 2>&1 || {
        tail -30 "$dest/configure.log" >&2
        exit 1
    }
    echo "$stamp" >"$dest/.acs-configured"
    echo "$dest"
}

# make TARGET in a configured tree, quietly unless it fails
make_tree() {
    local tree=$1 target=$2
    make -s -j"$(nproc)" -C "$tree" -f objs/Makefile $target \
        >"$tree/make.log" 2>&1 || {
        cat "$tree/make.log" >&2
        exit 1
    }
}

# builds the module (and with "binary", for NGINX_SRC, the nginx binary)
build() {
    deps
    mkdir -p "$BUILD" "$ROOT/objs"
    local tree
    tree=$(configure "$BUILD/nginx-src")
    if [ -n "${NGINX_SRC:-}" ] && [ "${1:-}" = binary ]; then
        make_tree "$tree" ""            # the binary and the modules
    else
        make_tree "$tree" modules
    fi
    if ! cmp -s "$tree/objs/$MODULE.so" "$ROOT/objs/$MODULE.so"; then
        # a new file, renamed into place: nginx processes that have the old
        # one mapped keep it intact
        cp "$tree/objs/$MODULE.so" "$ROOT/objs/.$MODULE.so.tmp"
        mv -f "$ROOT/objs/.$MODULE.so.tmp" "$ROOT/objs/$MODULE.so"
        log "built objs/$MODULE.so (nginx $(tree_version "$tree"), $tree)"
    fi
    # what the unit tests and `test` read: the tree and its binary
    {
        echo "tree=$tree"
        echo "version=$(tree_version "$tree")"
        if [ -z "${NGINX_SRC:-}" ]; then
            echo "binary=/usr/sbin/nginx"
        elif [ -x "$tree/objs/nginx" ] && [ "${1:-}" = binary ]; then
            echo "binary=$tree/objs/nginx"
        fi
    } >"$BUILD/nginx-tree"
}

# build, with NGINX_SRC's nginx binary too unless NGINX_BIN names the one
# to run
build_runnable() {
    if [ -n "${NGINX_SRC:-}" ] && [ -z "${NGINX_BIN:-}" ]; then
        build binary
    else
        build
    fi
}

# the value of KEY in build/nginx-tree
built() {
    sed -n "s|^$1=||p" "$BUILD/nginx-tree"
}

nginx_version() {
    "$1" -v 2>&1 | sed -n 's|^nginx version: [^/]*/\([0-9.]*\).*|\1|p'
}

# runs the suite (or FILES) with BINARY, the module MODULE_SO and the tree
# TREE; servers under SERVROOT
run_suite() {
    local binary=$1 so=$2 tree=$3 servroot=$4
    shift 4
    local bv tv
    bv=$(nginx_version "$binary")
    tv=$(tree_version "$tree")
    [ -n "$bv" ] || die "$binary: not an nginx binary"
    [ "$bv" = "$tv" ] || die "the module is built against nginx $tv ($tree)," \
        "$binary is nginx $bv: set NGINX_BIN (or NGINX_SRC) to match"
    cd "$ROOT"
    export TEST_NGINX_BINARY="$binary"
    export TEST_NGINX_LOAD_MODULES="$so"
    export TEST_NGINX_SERVROOT="$servroot"
    export ACS_NGINX_TREE="$tree"
    npm_packages
    rm -rf "$TEST_NGINX_SERVROOT"
    log "testing nginx $bv ($binary) with $so"
    prove_files "$@"
}

# the test's npm packages (t/package-lock.json), once
npm_packages() {
    if [ ! -d "$ROOT/t/node_modules/@azure/communication-common" ]; then
        log "installing the test's npm packages (t/package-lock.json)"
        npm ci --prefix "$ROOT/t" --no-audit --no-fund --loglevel=error >/dev/null
    fi
}

# prove FILES, or every file of t/
prove_files() {
    if [ $# -gt 0 ]; then
        prove -I "$ROOT/t/lib" -j "${TEST_JOBS:-2}" "$@"
    else
        prove -I "$ROOT/t/lib" -j "${TEST_JOBS:-2}" -r t
    fi
}

tests() {
    deps test
    build_runnable
    local bin=${NGINX_BIN:-$(built binary)}
    [ -n "$bin" ] || die "no nginx binary to test with: set NGINX_BIN"
    run_suite "$bin" "$ROOT/objs/$MODULE.so" "$(built tree)" "$ROOT/t/servroot" "$@"
}

run() {
    build_runnable
    local dir="$BUILD/run" secret key nhport port bob nginx
    nginx=${NGINX_BIN:-$(built binary)}
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
    "$nginx" -p "$dir" -c "$dir/conf/nginx.conf" -t -q

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
    "$nginx" -p "$dir" -c "$dir/conf/nginx.conf" -g 'daemon off;'
}

# the whole suite with nginx under valgrind memcheck; prints every report
# that names an error or a definite leak
valgrind_tests() {
    deps test
    build_runnable
    command -v valgrind >/dev/null || install_packages valgrind
    cd "$ROOT"
    export VALGRIND_DIR="$BUILD/valgrind"
    rm -rf "$VALGRIND_DIR"
    export ACS_VALGRIND_NGINX="${NGINX_BIN:-$(built binary)}"
    export TEST_NGINX_BINARY="$ROOT/t/valgrind-nginx"
    export TEST_NGINX_LOAD_MODULES="$ROOT/objs/$MODULE.so"
    export TEST_NGINX_SERVROOT="$ROOT/t/servroot"
    ACS_NGINX_TREE="$(built tree)"
    export ACS_NGINX_TREE
    rm -rf "$TEST_NGINX_SERVROOT"
    npm_packages
    prove_files "$@" || true
    local bad
    bad=$(grep -lE "Invalid (read|write|free)|uninitialised|Jump to|definitely lost" \
          "$VALGRIND_DIR"/*.log 2>/dev/null || true)
    echo "valgrind: $(ls "$VALGRIND_DIR" | wc -l) process reports, $(echo -n "$bad" | grep -c .) with errors or definite leaks"
    for f in $bad; do echo "== $f"; sed -n 1,40p "$f"; done
}

# --- the Debian archive: source indexes read with a private apt
# configuration (the machine's sources are never changed)

MATRIX_SUITES=(bookworm trixie forky sid)

debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "${DEBIAN_MIRROR%/}"
        return
    fi
    local uri
    uri=$(apt-get indextargets --format '$(REPO_URI)' 'Label: Debian' 2>/dev/null \
          | head -1)
    echo "${uri:-http://deb.debian.org/debian/}" | sed 's|/*$||'
}

APT_DIR="$BUILD/apt"
apt_private() {
    apt-get -o Dir::Etc::SourceList="$APT_DIR/sources.list" \
        -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
        -o APT::Sandbox::User=root "$@"
}

# the source indexes of MATRIX_SUITES, fetched and verified by apt (the
# archive's InRelease, signed with the keys of debian-archive-keyring)
source_indexes() {
    local mirror s
    mirror=$(debian_mirror)
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    : >"$APT_DIR/sources.list.new"
    for s in "${MATRIX_SUITES[@]}"; do
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $s main" \
            >>"$APT_DIR/sources.list.new"
    done
    mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
    # once a day is enough
    if [ -z "$(find "$APT_DIR/lists" -maxdepth 1 -name '*Sources*' -mmin -1440 2>/dev/null)" ]; then
        log "reading the source indexes of ${MATRIX_SUITES[*]} from $mirror"
        apt_private update -qq >"$APT_DIR/update.log" 2>&1 || {
            cat "$APT_DIR/update.log" >&2
            die "apt-get update of the source indexes failed"
        }
    fi
}

# "SUITE VERSION URL SHA256" of the nginx release tarball of each suite
orig_tarballs() {
    local s tmp
    tmp=$(mktemp -d)
    for s in "${MATRIX_SUITES[@]}"; do
        # --print-uris skips files found in the current directory: an
        # empty one
        (cd "$tmp" && apt_private source --print-uris -qq "nginx/$s" 2>/dev/null) \
            | sed -n "s|^'\([^']*/nginx_\([0-9.]*\)\.orig\.tar\.gz\)' [^ ]* [0-9]* SHA256:\([0-9a-f]*\)$|$s \2 \1 \3|p"
    done
    rmdir "$tmp"
}

# fetches the release tarball of VERSION into build/matrix/, verified
# against the SHA-256 of the archive's source index; prints its path
fetch_tarball() {
    local version=$1 line suite url sum dest got code
    line=$(orig_tarballs | awk -v v="$version" '$2 == v { print; exit }')
    [ -n "$line" ] || die "nginx $version is in none of the source indexes of" \
        "${MATRIX_SUITES[*]} (they have: $(orig_tarballs | awk '{print $2" ("$1")"}' \
        | sort -u | tr '\n' ' '))"
    read -r suite url sum <<<"$(echo "$line" | awk '{print $1, $3, $4}')"
    dest="$BUILD/matrix/dl/nginx_$version.orig.tar.gz"
    mkdir -p "$(dirname "$dest")"
    if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$sum" ]; then
        echo "$dest"
        return
    fi
    log "fetching $url ($suite)"
    code=$(curl -sS -L -o "$dest.part" -w '%{http_code}' "$url") || code=000
    if [ "$code" != 200 ]; then
        rm -f "$dest.part"
        die "the archive does not serve $url (HTTP $code; listed in $suite's" \
            "source index with SHA-256 $sum)"
    fi
    got=$(sha256sum "$dest.part" | cut -d' ' -f1)
    if [ "$got" != "$sum" ]; then
        rm -f "$dest.part"
        die "$url: SHA-256 $got, the source index of $suite says $sum"
    fi
    mv "$dest.part" "$dest"
    log "nginx_$version.orig.tar.gz: SHA-256 $sum as in $suite's source index"
    echo "$dest"
}

# builds nginx VERSION and the module, runs the suite (or FILES); one line
# of result in build/matrix/results
matrix_one() {
    local version=$1 dir tarball tree start rc=0 line
    shift
    dir="$BUILD/matrix/$version"
    start=$(date +%s)
    tarball=$(fetch_tarball "$version") || return 1
    tree=$(NGINX_SRC=$tarball NGINX_FLAGS="${NGINX_FLAGS:-${DEFAULT_FLAGS[*]}}" \
           configure "$dir/nginx-src") || return 1
    log "building nginx $version and the module"
    make_tree "$tree" "" || return 1
    run_suite "$tree/objs/nginx" "$tree/objs/$MODULE.so" "$tree" \
        "$dir/servroot" "$@" 2>&1 | tee "$dir/prove.log" || rc=$?
    # prove's summary: "Files=36, Tests=1599, ..." and "Result: PASS"
    line=$(grep -E '^Files=' "$dir/prove.log" | tail -1 | cut -d, -f1-2)
    printf '%s\t%s\t%s\t%ss\n' "$version" \
        "$(grep -E '^Result:' "$dir/prove.log" | tail -1 | cut -d' ' -f2)" \
        "${line:-no summary}" "$(( $(date +%s) - start ))" \
        >>"$BUILD/matrix/results"
    return $rc
}

matrix() {
    deps test
    source_indexes
    local versions=() files=() v failed=()
    for v in "$@"; do
        if [[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then versions+=("$v"); else files+=("$v"); fi
    done
    if [ ${#versions[@]} -eq 0 ]; then
        mapfile -t versions < <(orig_tarballs | awk '{print $2}' | sort -uV)
    fi
    mkdir -p "$BUILD/matrix"
    : >"$BUILD/matrix/results"
    log "nginx versions: ${versions[*]}"
    for v in "${versions[@]}"; do
        ( matrix_one "$v" "${files[@]}" ) || failed+=("$v")
    done
    echo
    echo "matrix: version, result, files and tests, time"
    cat "$BUILD/matrix/results"
    for v in "${failed[@]}"; do
        grep -q "^$v	" "$BUILD/matrix/results" || printf '%s\tnot built\n' "$v"
    done
    [ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
}

# --- a fresh Debian release in a chroot

debian_chroot() {
    local suite=${1:-}
    [ -n "$suite" ] || die "usage: $0 debian SUITE [COMMAND...]"
    shift
    [ $# -gt 0 ] || set -- test
    [ "$(id -u)" -eq 0 ] || die "debian: needs root (debootstrap, chroot)"
    local dir="$BUILD/debian/$suite" root mirror f start
    root="$dir/root"
    start=$(date +%s)
    mirror=$(debian_mirror)
    [ -n "$(missing_packages debootstrap)" ] && install_packages debootstrap
    if [ ! -f "$root/.acs-ready" ]; then
        rm -rf "$root"
        mkdir -p "$dir"
        log "debootstrap $suite from $mirror into $root"
        debootstrap --variant=minbase --include=ca-certificates "$suite" \
            "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
            tail -20 "$dir/debootstrap.log" >&2
            die "debootstrap $suite failed"
        }
        # no service starts in the chroot when a package is installed
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 0755 "$root/usr/sbin/policy-rc.d"
        touch "$root/.acs-ready"
    fi
    # this machine's name resolution, local CAs (a proxy's, say) and apt's
    # network settings (proxies; an archive snapshot whose Release files
    # are past their Valid-Until), as any new machine here gets them
    cp /etc/resolv.conf /etc/hosts "$root/etc/"
    apt-config dump | grep -E '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy) ' \
        >"$root/etc/apt/apt.conf.d/99acs-host" || true
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
    fi
    # a copy of this checkout (as it is, uncommitted changes too), without
    # what was built or installed here
    rm -rf "$root/src"
    mkdir -p "$root/src"
    tar -C "$ROOT" --exclude=./build --exclude=./objs --exclude=./.git \
        --exclude='./t/servroot*' --exclude=./t/node_modules \
        --exclude=./bench/results -cf - . | tar -C "$root/src" -xf -
    local envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
                HOME=/root LANG=C.UTF-8 TEST_JOBS="${TEST_JOBS:-2}"
                ACS_PACKAGE_VERSION="$(package_version)")
    for f in NODE_EXTRA_CA_CERTS SSL_CERT_FILE SSL_CERT_DIR http_proxy https_proxy \
             no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [ -n "${!f:-}" ] && envs+=("$f=${!f}")
    done
    log "in Debian $suite ($root): ./build.sh $*"
    local rc=0
    # a private mount namespace: /proc goes away with it
    unshare --mount --fork /bin/sh -c 'mount -t proc proc "$0/proc" &&
        { mount -t devpts -o newinstance,ptmxmode=0666 devpts "$0/dev/pts" || true; } &&
        exec chroot "$0" "$@"' \
        "$root" env -i "${envs[@]}" /src/build.sh "$@" || rc=$?
    log "Debian $suite: ./build.sh $* exited $rc after $(( $(date +%s) - start ))s"
    return $rc
}

# --- the Debian package

# version: the project has no release numbers yet; 0~ and the commit
package_version() {
    local n h d
    if [ -n "${ACS_PACKAGE_VERSION:-}" ]; then
        echo "$ACS_PACKAGE_VERSION"
    elif n=$(git -C "$ROOT" rev-list --count HEAD 2>/dev/null) \
       && h=$(git -C "$ROOT" rev-parse --short=10 HEAD 2>/dev/null); then
        d=$(git -C "$ROOT" log -1 --format=%cd --date=format:%Y%m%d)
        echo "0~git$d.$n.$h"
    else
        echo "0~local$(date +%Y%m%d)"
    fi
}

deb() {
    [ -z "${NGINX_SRC:-}" ] || die "deb: the package is built against Debian's" \
        "nginx-dev tree (its ABI); unset NGINX_SRC"
    [ -z "${NGINX_BIN:-}" ] || die "deb: the package is for /usr/sbin/nginx; unset NGINX_BIN"
    deps
    build
    local abi version arch stage out doc shlibs conf names s tmp
    abi=$(sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars)
    [ -n "$abi" ] || die "no nginx:abi in /usr/share/nginx/src/debian/libnginx-mod.abisubstvars"
    version=$(package_version)
    arch=$(dpkg --print-architecture)
    stage="$BUILD/deb/stage"
    out="$BUILD/deb/${PKG}_${version}_${arch}.deb"
    doc="$stage/usr/share/doc/$PKG"
    rm -rf "$stage" "$BUILD"/deb/*.deb
    mkdir -p "$stage/DEBIAN" "$stage/usr/lib/nginx/modules" \
        "$stage/usr/share/nginx/modules-available" "$stage/usr/bin" "$doc/docs"

    install -m 0644 "$ROOT/objs/$MODULE.so" "$stage/usr/lib/nginx/modules/"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note \
        "$stage/usr/lib/nginx/modules/$MODULE.so"
    conf=mod-http-acs-notify.conf
    echo "load_module modules/$MODULE.so;" \
        >"$stage/usr/share/nginx/modules-available/$conf"
    install -m 0755 "$ROOT"/tools/* "$stage/usr/bin/"
    install -m 0644 "$ROOT/README.md" "$doc/"
    install -m 0644 "$ROOT"/docs/*.md "$doc/docs/"
    install -m 0644 "$ROOT/docs/nginx.conf" "$doc/nginx.conf.example"
    cat >"$doc/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ngx_acs_notify_module
Comment: built by ./build.sh deb from the project's repository; the
 repository states no licence of its own yet.
EOF
    gzip -9n -c >"$doc/changelog.Debian.gz" <<EOF
$PKG ($version) unstable; urgency=medium

  * Built by ./build.sh deb for nginx $(dpkg-query -W -f='${Version}' nginx-dev) ($abi).

 -- ngx_acs_notify_module <root@localhost>  $(date -R)
EOF

    # shared libraries, as dpkg-shlibdeps finds them
    tmp=$(mktemp -d)
    mkdir -p "$tmp/debian"
    printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$PKG" "$PKG" \
        >"$tmp/debian/control"
    shlibs=$(cd "$tmp" && dpkg-shlibdeps -O "$stage/usr/lib/nginx/modules/$MODULE.so" \
             2>/dev/null | sed -n 's/^shlibs:Depends=//p')
    rm -rf "$tmp"
    [ -n "$shlibs" ] || die "dpkg-shlibdeps found no shared libraries"

    # maintainer scripts: Debian's own for nginx modules (dh_nginx's), which
    # enable the snippet in /etc/nginx/modules-enabled at install, and
    # remove the link at removal
    names="$conf:50-$conf"
    for s in postinst prerm postrm; do
        {
            echo '#!/bin/sh'
            echo 'set -e'
            sed "s|#NAMES#|$names|g" "/usr/share/debhelper/autoscripts/$s-nginx"
        } >"$stage/DEBIAN/$s"
        chmod 0755 "$stage/DEBIAN/$s"
    done

    cat >"$stage/DEBIAN/control" <<EOF
Package: $PKG
Source: ngx-acs-notify-module
Version: $version
Architecture: $arch
Maintainer: ngx_acs_notify_module <root@localhost>
Installed-Size: $(du -sk "$stage" | cut -f1)
Depends: $abi, $shlibs
Recommends: ca-certificates, curl, openssl, lmdb-utils
Section: httpd
Priority: optional
Description: Azure Communication Services push notifications for nginx
 An nginx dynamic module that receives Azure Communication Services events
 from Event Grid, keeps a device registry behind a signed REST API, and sends
 the pushes through Azure Notification Hubs from nginx's own event loop.
 .
 Built for nginx $(dpkg-query -W -f='${Version}' nginx-dev) ($abi).  The module is
 enabled by /etc/nginx/modules-enabled/50-$conf;
 the tools acs-curl and acs-registry-to-hub are in /usr/bin.
EOF
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
    rm -rf "$stage"
    log "built ${out#"$ROOT"/} (Depends: $abi, $shlibs)"
    echo "$out"
}

# installs the package, checks nginx -t with docs/nginx.conf (paths pointed
# at files made here) and the module's snippet enabled, removes and purges
# it, and checks that nothing is left; prints TAP-like lines and a summary
deb_check() {
    [ "$(id -u)" -eq 0 ] || die "deb-check installs a package: run it as root"
    local out work conf abi pass=0 fail=0
    out=$(deb | tail -1)
    abi=$(sed -n 's/^nginx:abi=//p' /usr/share/nginx/src/debian/libnginx-mod.abisubstvars)
    work="$BUILD/deb/check"
    rm -rf "$work"
    mkdir -p "$work"
    conf="$work/nginx.conf"
    make_example_conf "$work" >"$conf"
    check() {
        local name=$1
        shift
        if "$@" >"$work/last.log" 2>&1; then
            pass=$((pass + 1)); echo "ok - $name"
        else
            fail=$((fail + 1)); echo "not ok - $name"; sed 's/^/#   /' "$work/last.log"
        fi
    }
    # what nginx's directories hold, and the package's own files
    nginx_files() {
        find /etc/nginx /usr/lib/nginx /usr/share/nginx -xdev | LC_ALL=C sort
    }
    nginx_t() {   # nginx -t [ARGS]: successful, and no warning
        local o
        o=$(nginx -t "$@" 2>&1)
        echo "$o"
        echo "$o" | grep -q 'test is successful' && ! echo "$o" | grep -qE '\[(warn|emerg|alert|crit)\]'
    }
    gone() {      # none of the files in $1 exists
        local f rc=0
        while read -r f; do
            [ -e "$f" ] || [ -L "$f" ] && { echo "left: $f"; rc=1; }
        done <"$1"
        return $rc
    }
    export DEBIAN_FRONTEND=noninteractive
    nginx_files >"$work/before"
    check "apt-get install ./${out##*/}" \
        apt-get install -y -qq --no-install-recommends "$out"
    dpkg-query -L "$PKG" | while read -r f; do [ -d "$f" ] || echo "$f"; done \
        >"$work/files"
    check "the module in /usr/lib/nginx/modules" test -f "/usr/lib/nginx/modules/$MODULE.so"
    check "modules-available/mod-http-acs-notify.conf loads it" grep -qxF \
        "load_module modules/$MODULE.so;" /usr/share/nginx/modules-available/mod-http-acs-notify.conf
    check "the snippet is enabled (modules-enabled/50-mod-http-acs-notify.conf)" \
        test -L /etc/nginx/modules-enabled/50-mod-http-acs-notify.conf
    check "the tools in /usr/bin" test -x /usr/bin/acs-curl -a -x /usr/bin/acs-registry-to-hub
    check "the docs in /usr/share/doc/$PKG" test -f "/usr/share/doc/$PKG/docs/directives.md"
    check "it depends on $abi, the ABI of the nginx it was built for" \
        sh -c "dpkg-query -W -f='\${Depends}' $PKG | grep -qw '$abi'"
    check "nginx -t with the system's nginx.conf and the snippet enabled" nginx_t
    check "nginx -t with docs/nginx.conf (its module from the snippet), no warning" \
        nginx_t -c "$conf"
    check "the snippet is what loads the module (without it: unknown directive)" \
        sh -c "mv /etc/nginx/modules-enabled/50-mod-http-acs-notify.conf '$work/'
               nginx -t -c '$conf' 2>&1 | grep 'unknown directive \"acs_notify'; rc=\$?
               mv '$work/50-mod-http-acs-notify.conf' /etc/nginx/modules-enabled/; exit \$rc"
    check "apt-get remove" apt-get remove -y -qq "$PKG"
    check "removed: the module and the enabled snippet are gone" sh -c \
        "! test -e /usr/lib/nginx/modules/$MODULE.so && ! test -e /etc/nginx/modules-enabled/50-mod-http-acs-notify.conf"
    check "nginx -t after the removal" nginx_t
    check "apt-get purge" apt-get purge -y -qq "$PKG"
    check "purged: none of the package's files is left" gone "$work/files"
    nginx_files >"$work/after"
    check "purged: /etc/nginx, /usr/lib/nginx, /usr/share/nginx as before the installation" \
        diff "$work/before" "$work/after"
    check "purged: dpkg no longer knows $PKG" \
        sh -c "! dpkg-query -W -f='\${Status}' $PKG 2>/dev/null | grep -q ."
    echo "deb-check: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
}

# docs/nginx.conf for nginx -t on this machine: the paths pointed at files
# made in DIR, the module loaded by the enabled snippet (Debian's way)
make_example_conf() {
    local dir=$1
    mkdir -p "$dir/acs" "$dir/lib" "$dir/logs"
    printf '%s\n' 'Endpoint=sb://contoso-ns.servicebus.windows.net/;SharedAccessKeyName=send-only;SharedAccessKey=ZXhhbXBsZS1rZXktbm90LXJlYWw=' \
        >"$dir/acs/nh-send.conn"
    echo example-secret-0123456789 >"$dir/acs/eg-secret"
    echo ZXhhbXBsZS1hY2Nlc3Mta2V5LTAxMjM0NTY3ODk= >"$dir/acs/access.key"
    [ -r /etc/ssl/certs/ssl-cert-snakeoil.pem ] || \
        openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=test -days 1 \
            -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    sed -e "s|^load_module modules/$MODULE.so;|include /etc/nginx/modules-enabled/*.conf;|" \
        -e "s|/etc/nginx/acs/|$dir/acs/|g" -e "s|/var/lib/nginx/acs-|$dir/lib/acs-|g" \
        -e "s|/var/log/nginx/|$dir/logs/|g" -e "s|/run/nginx.pid|$dir/logs/nginx.pid|" \
        "$ROOT/docs/nginx.conf" \
    | if [ -r /etc/ssl/certs/ssl-cert-snakeoil.pem ]; then cat; else
        sed -e "s|/etc/ssl/certs/ssl-cert-snakeoil.pem|$dir/cert.pem|" \
            -e "s|/etc/ssl/private/ssl-cert-snakeoil.key|$dir/key.pem|"
      fi
}

# --- checks of the knobs (CI): NGINX_SRC as a tarball, a release tree and a
# checkout; the unit tests on that tree; TEST_NGINX_BINARY; the stamp
knobs() {
    deps test
    "$ROOT/.ci/knobs"
}

cmd=${1:-build}
[ $# -gt 0 ] && shift
case "$cmd" in
    deps)      deps ;;
    build)     build ;;
    run)       run ;;
    test)      tests "$@" ;;
    matrix)    matrix "$@" ;;
    debian)    debian_chroot "$@" ;;
    deb)       deb >/dev/null ;;
    deb-check) deb_check ;;
    knobs)     knobs ;;
    fetch)     [ $# -eq 1 ] || die "usage: $0 fetch VERSION"
               source_indexes; fetch_tarball "$1" ;;
    valgrind)  valgrind_tests "$@" ;;
    *)         echo "usage: $0 [deps|build|run|test|matrix|debian|deb|deb-check|fetch|knobs|valgrind]" >&2
               exit 2 ;;
esac
