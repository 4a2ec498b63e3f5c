#!/usr/bin/env node
// distant-hub.mjs: a Notification Hubs stand-in that answers *at a distance*.
//
// One Node process, built-in modules only (runs on Debian 12's nodejs 18 and
// on Node 20).  It stands in for the NH data plane's direct sends and tag
// sends over HTTPS, with HTTP/2 and HTTP/1.1, a configurable round trip,
// throttling and failure modes, for the tests and benchmarks of the push
// engine.  AcsTest::FakeNH (Perl) is the strict, journaled, slow stand-in
// for everything else; t/lib/AcsTest/DistantHub.pm starts this one.
//
//   node t/lib/distant-hub.mjs --cert server.pem --cert-key server.key \
//        --namespace acs-test-ns --hub acs-push --key-name send --key KEYTEXT \
//        --delay 150 --jitter 20 --ready-file /tmp/dh.ready
//
// OPTIONS (`--name value` or `--name=value`; a flag takes no value)
//   --port N            TLS port on --address (0, the default: a free port;
//                       the port chosen is in the ready file)
//   --address A         listen address (127.0.0.1)
//   --cert FILE         certificate for *.servicebus.windows.net (PEM)
//   --cert-key FILE     its private key (PEM).  (The brief's `--key` names two
//                       things; here `--key` is the SAS key text, see below.)
//   --namespace NS      NH namespace (acs-test-ns): the Host, SNI and SAS
//                       audience must be NS.servicebus.windows.net
//   --hub NAME          a hub of the namespace; repeatable (acs-push)
//   --key-name NAME     the SAS rule's name (DefaultFullSharedAccessSignature)
//   --key TEXT          the SAS rule's key text, as in the connection string
//                       (SharedAccessKey=TEXT); required
//   --rights R          the rule's rights: send, listen, manage, or a comma
//                       list (manage).  Without Send a push gets 403.
//   --control-port N    plain HTTP control API on 127.0.0.1 (0: a free port)
//   --h1                ALPN offers http/1.1 only (default: h2 and http/1.1)
//   --max-streams N     HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS (100)
//   --delay MS          answer MS after the whole request body was read (0)
//   --jitter MS         plus a uniform random 0..MS (0)
//   --connect-delay MS  hold each accepted TCP connection MS before its TLS
//                       handshake starts: the distance paid by a new
//                       connection (0)
//   --throttle N        a valid push arriving while N requests are in flight
//                       is answered 429 at once (0: never)
//   --retry-after S     Retry-After: S on the 429s of --throttle and --fail
//   --fail STATUS       every valid push is answered STATUS after the delay
//   --hang              every request is read and never answered
//   --refuse            no listening socket: connections are refused
//   --journal FILE      one JSON line per request (off: it costs a write)
//   --ready-file FILE   written (atomically) once listening:
//                       {"pid":..,"port":..,"control_port":..}
//   --parent-pid PID    exit when that process is gone (checked every second)
//
// Every mode option (delay, jitter, connect_delay, throttle, retry_after,
// fail, hang, refuse) can be changed at run time through the control port.
// The server never closes a connection by itself: no idle timeout (HTTP/1.1
// keep-alive 10 minutes, HTTP/2 none), no request-count limit.
//
// CONTROL PORT (HTTP/1.1 on 127.0.0.1, JSON)
//   GET  /stats   counters since the start or the last reset: requests,
//                 by_status, by_protocol {h1,h2}, connections {opened, open,
//                 max_open, by_protocol, tls_failures}, in_flight,
//                 max_in_flight, throttled (429s of --throttle), sent_429 (all
//                 429s), hung, aborted (requests the client gave up before
//                 the answer), errors (exceptions caught: a bug), cpu
//                 {user_ms, system_ms}, mode, and timeline:
//                 one entry per second for the last 120 s, {t (epoch s),
//                 conns (opened), requests, answered, throttled,
//                 inflight_max, cpu_ms (this process), lag_ms (the event
//                 loop's worst delay in that second)}; the last is partial.
//   GET  /mode    the current mode
//   POST /mode    a JSON object of mode keys to change, e.g.
//                 {"delay":150,"jitter":10,"throttle":2000,"retry_after":1,
//                  "fail":503,"hang":false,"refuse":true}; "fail": 0 or null
//                 turns failing off, "retry_after": null removes it.
//                 Answers the new mode; unknown keys or values: 400.
//                 refuse:true closes the listening socket AND drops every
//                 open connection (otherwise an HTTP/2 client would never
//                 notice); refuse:false listens again on the same port.
//   POST /reset   zeroes the counters and the timeline (open connections and
//                 requests in flight stay counted as such)
//   POST /drop    closes every open connection at once (TCP reset-like)
//
// VALIDATION (as AcsTest::FakeNH's VALIDATION for sends; the first failure
// is the answer, an NH-style XML error body, after the delay like any answer)
//   1. Host (:authority) NS.servicebus.windows.net, a port allowed (404;
//      missing 400); TLS SNI the same host (400)
//   2. POST /{hub}/messages[/], hub known, case-insensitive (404; other
//      method 405); /{hub}/installations/... 501 (not modelled here)
//   3. api-version one of 2015-01 2015-04 2015-08 2016-07 2017-04 2020-06
//      (400); `direct` present: a direct send; else the request needs
//      ServiceBusNotification-Tags (a tag send), or 400 (a broadcast)
//   4. Authorization: SharedAccessSignature sr&sig&se&skn (401 with NH's
//      MissingToken, MalformedToken, InvalidSignature, ExpiredToken,
//      InvalidAudience details); sr decoded, lower-cased, scheme ignored,
//      must be a prefix on a / boundary of NS.servicebus.windows.net/{hub}/
//      messages; sig = base64(HMAC-SHA256(key text bytes, sr-as-sent "\n"
//      se)); a rule without Send: 403, empty body (2020-06), 401 older
//   5. x-ms-version 2020-06 (400); ServiceBusNotification-Format apple
//      fcmv1 gcm windows browser adm baidu xiaomi (+ template for tag sends)
//      (400); direct: DeviceHandle present, once, no white space, hex for
//      apple, https URL for windows/browser (400); tag send: no DeviceHandle,
//      a valid tag expression (400); Content-Type application/json (utf-8)
//      or for windows application/xml / application/octet-stream (wns/raw,
//      X-WNS-Type required) (415); apns-* headers (400); browser Auth and
//      P256DH (400)
//   6. body: over 1 MiB 413 at once, the rest read and dropped (no close, no
//      100 Continue for it); over 65536 bytes 413; empty, not UTF-8 JSON
//      (XML for windows), over the format's payload limit (apple fcmv1 gcm
//      browser baidu xiaomi 4096, adm 6144, windows 5120), apple without
//      "aps", fcmv1 without "message" or with token/topic/condition,
//      non-string data values, bad android ttl or priority, template body
//      not an object of strings: 400
// Then, for a valid push: --throttle (429 at once), --fail (STATUS after the
// delay), else 201 after the delay with TrackingId, x-ms-correlation-request-
// id (fresh UUIDs), Location https://NS.servicebus.windows.net/{hub}/
// messages/{id}?api-version=2020-06 and Content-Length: 0.  A verified
// Authorization value is remembered (value -> verdict; the expiry is still
// checked per request), so a token is HMAC-verified once.
//
// JOURNAL LINE  {"time" (epoch s, body read), "proto" (h1|h2), "conn"
// (connection number), "req" (its number on the connection), "hub", "op"
// (direct-send|tag-send), "handle" or "tags", "format", "body_sha1" (16 hex
// of the body's SHA-1: a push sent twice has the same), "event" (the
// body's first "eventId" string: a chat push's event), "status" (0: never
// answered), "delay_ms" (the delay drawn), "detail" (why, for an error),
// "tracking_id", "hang"/"aborted" when so}; written when the request is
// answered or abandoned.
//
// NOT LIKE THE REAL SERVICE: the tag send reaches nobody (no installations);
// batch sends, installations, registrations, telemetry are not modelled; the
// Detail texts only follow NH's leading codes; the 429 of --throttle is
// immediate (the real one still pays the network round trip); the distance
// is the server's wait, not the wire's (bytes are not slowed, a TLS
// handshake pays only --connect-delay); whether NH offers h2, its stream
// limit and its throttling threshold are not documented (PROTOCOLS.md
// 3.4.1): the defaults here are guesses to vary, not facts.
//
// HTTP/2 LIMITS OF NODE'S nghttp2: a stream past --max-streams is refused
// (RST_STREAM REFUSED_STREAM, as the protocol says); and nghttp2 >= 1.57
// (bundled in Node 18.19 and 20; backported into Debian 12's libnghttp2
// 1.52.0-1+deb12u1) ends a connection with GOAWAY (INTERNAL_ERROR) when
// the client resets streams faster than about 1,000 at once or 33 a second
// on average (the "rapid reset" defence; Node offers no setting for it): in
// --hang mode, a client that cancelled 100 streams every 25 ms lost its
// connection at the 1,100th reset.  A client that cancels thousands of hung
// pushes at once may see this; whether NH does the same is not known.

import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import * as buffer from 'node:buffer';

// ---------------------------------------------------------------------------
// protocol constants (PROTOCOLS.md section 3, AcsTest::FakeNH)

const DOMAIN = 'servicebus.windows.net';
const API_VERSION = '2020-06';
const API_VERSIONS = new Set(['2015-01', '2015-04', '2015-08', '2016-07',
                              '2017-04', '2020-06']);
const FORMATS = new Map([
    ['apple', 4096], ['fcmv1', 4096], ['gcm', 4096], ['browser', 4096],
    ['adm', 6144], ['baidu', 4096], ['xiaomi', 4096], ['windows', 5120],
]);
const MAX_REQUEST_BODY = 65536;     // NH: request <= 64 KB, else 413
const MAX_READ_BODY = 1 << 20;      // larger bodies are not read whole
const PUSH_TYPES = new Set(['alert', 'background', 'voip', 'complication',
    'fileprovider', 'mdm', 'location', 'liveactivity', 'pushtotalk']);
const WNS_TYPES = new Set(['wns/toast', 'wns/tile', 'wns/badge', 'wns/raw']);
const MAX_EXPR_TAGS_OR = 20;
const MAX_EXPR_TAGS = 6;
const SAS_CACHE_MAX = 10000;

// ---------------------------------------------------------------------------
// options

const MODE_KEYS = ['delay', 'jitter', 'connect_delay', 'throttle',
                   'retry_after', 'fail', 'hang', 'refuse'];

function usage(msg) {
    process.stderr.write(`distant-hub: ${msg}\n`
        + 'see the comment at the top of t/lib/distant-hub.mjs\n');
    process.exit(2);
}

function parseOptions(argv) {
    const o = {
        port: 0, address: '127.0.0.1', cert: null, certKey: null,
        namespace: 'acs-test-ns', hubs: [], keyName:
        'DefaultFullSharedAccessSignature', key: null, rights: 'manage',
        controlPort: 0, h1: false, maxStreams: 100, journal: null,
        readyFile: null, parentPid: 0,
        mode: { delay: 0, jitter: 0, connect_delay: 0, throttle: 0,
                retry_after: null, fail: 0, hang: false, refuse: false },
    };
    const flags = { '--h1': 'h1', '--hang': 'hang', '--refuse': 'refuse' };
    const ints = {
        '--port': [o, 'port', 0, 65535],
        '--control-port': [o, 'controlPort', 0, 65535],
        '--max-streams': [o, 'maxStreams', 1, 2147483647],
        '--parent-pid': [o, 'parentPid', 0, 2147483647],
        '--delay': [o.mode, 'delay', 0, 3600000],
        '--jitter': [o.mode, 'jitter', 0, 3600000],
        '--connect-delay': [o.mode, 'connect_delay', 0, 3600000],
        '--throttle': [o.mode, 'throttle', 0, 100000000],
        '--retry-after': [o.mode, 'retry_after', 0, 86400],
        '--fail': [o.mode, 'fail', 100, 599],
    };
    const strs = {
        '--address': 'address', '--cert': 'cert', '--cert-key': 'certKey',
        '--namespace': 'namespace', '--key-name': 'keyName', '--key': 'key',
        '--rights': 'rights', '--journal': 'journal',
        '--ready-file': 'readyFile',
    };
    for (let i = 0; i < argv.length; i++) {
        let a = argv[i], v;
        const eq = a.indexOf('=');
        if (a.startsWith('--') && eq > 0) {
            v = a.slice(eq + 1);
            a = a.slice(0, eq);
        }
        if (flags[a]) {
            if (v !== undefined) usage(`${a} takes no value`);
            if (a === '--h1') o.h1 = true; else o.mode[flags[a]] = true;
            continue;
        }
        if (!ints[a] && !strs[a] && a !== '--hub') usage(`unknown option ${a}`);
        if (v === undefined) {
            if (++i >= argv.length) usage(`${a} needs a value`);
            v = argv[i];
        }
        if (a === '--hub') {
            o.hubs.push(v);
        } else if (ints[a]) {
            const [obj, k, min, max] = ints[a];
            if (!/^\d{1,10}$/.test(v) || +v < min || +v > max) {
                usage(`${a} wants an integer ${min}..${max}, got '${v}'`);
            }
            obj[k] = +v;
        } else {
            o[strs[a]] = v;
        }
    }
    if (!o.cert || !o.certKey) usage('--cert and --cert-key are required');
    if (o.key === null || o.key === '') usage('--key (SAS key text) is required');
    if (o.key.length > 256 || o.keyName.length > 256) usage('key or key name over 256');
    o.namespace = o.namespace.toLowerCase();
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(o.namespace)) usage('bad --namespace');
    if (o.hubs.length === 0) o.hubs.push('acs-push');
    const rights = new Set();
    for (const r of o.rights.toLowerCase().split(/[\s,|]+/)) {
        if (r === '') continue;
        if (!['send', 'listen', 'manage'].includes(r)) usage(`unknown right ${r}`);
        rights.add(r);
    }
    if (rights.has('manage')) { rights.add('send'); rights.add('listen'); }
    o.canSend = rights.has('send');
    return o;
}

const OPT = parseOptions(process.argv.slice(2));
const HOST = `${OPT.namespace}.${DOMAIN}`;
const HUBS = new Map(OPT.hubs.map((h) => [h.toLowerCase(), h]));
const MODE = OPT.mode;
const KEY_BYTES = Buffer.from(OPT.key, 'utf8');

// ---------------------------------------------------------------------------
// counters

const START = Date.now();
const S = newStats();
let inFlight = 0;
let connsOpen = 0;
let connSerial = 0;
const CONNS = new Set();            // per connection: {id, sock, proto, nreq}

function newStats() {
    return {
        since: Date.now(), requests: 0, by_status: {},
        by_protocol: { h1: 0, h2: 0 },
        conn_opened: 0, conn_max_open: 0, conn_by_protocol: { h1: 0, h2: 0 },
        tls_failures: 0, max_in_flight: 0, throttled: 0, hung: 0, aborted: 0,
        errors: 0, timeline: [],
    };
}

function newSecond(t) {
    return { t, conns: 0, requests: 0, answered: 0, throttled: 0,
             inflight_max: inFlight, cpu_ms: 0, lag_ms: 0 };
}

let CUR = newSecond(Math.floor(Date.now() / 1000));
let lastCpu = process.cpuUsage();
let lastTick = Date.now();

const ticker = setInterval(() => {
    const now = Date.now();
    const cpu = process.cpuUsage();
    CUR.cpu_ms = Math.round((cpu.user - lastCpu.user
                             + cpu.system - lastCpu.system) / 1000);
    CUR.lag_ms = Math.max(CUR.lag_ms, now - lastTick - 1000, 0);
    lastCpu = cpu;
    lastTick = now;
    S.timeline.push(CUR);
    if (S.timeline.length > 120) S.timeline.shift();
    CUR = newSecond(Math.floor(now / 1000));
    if (OPT.parentPid) {
        try { process.kill(OPT.parentPid, 0); } catch (e) {
            if (e.code === 'ESRCH') shutdown('parent went away');
        }
    }
}, 1000);

function inFlightUp() {
    inFlight++;
    if (inFlight > S.max_in_flight) S.max_in_flight = inFlight;
    if (inFlight > CUR.inflight_max) CUR.inflight_max = inFlight;
}

function statsJson() {
    const cpu = process.cpuUsage();
    const sent429 = S.by_status['429'] || 0;
    const partial = { ...CUR };
    return {
        uptime_s: Math.round((Date.now() - START) / 1000),
        since: S.since / 1000,
        requests: S.requests,
        by_status: S.by_status,
        by_protocol: S.by_protocol,
        connections: {
            opened: S.conn_opened, open: connsOpen,
            max_open: S.conn_max_open, by_protocol: S.conn_by_protocol,
            tls_failures: S.tls_failures,
        },
        in_flight: inFlight,
        max_in_flight: S.max_in_flight,
        throttled: S.throttled,
        sent_429: sent429,
        hung: S.hung,
        aborted: S.aborted,
        errors: S.errors,
        cpu: { user_ms: Math.round(cpu.user / 1000),
               system_ms: Math.round(cpu.system / 1000) },
        mode: MODE,
        port: PORT,
        protocols: OPT.h1 ? ['http/1.1'] : ['h2', 'http/1.1'],
        max_streams: OPT.maxStreams,
        timeline: [...S.timeline, partial],
    };
}

// ---------------------------------------------------------------------------
// small helpers

let PORT = OPT.port;
let dateSec = 0;
let dateStr = '';

function httpDate() {
    const s = Math.floor(Date.now() / 1000);
    if (s !== dateSec) {
        dateSec = s;
        dateStr = new Date(s * 1000).toUTCString();
    }
    return dateStr;
}

function pctDecode(s) {
    if (s.indexOf('%') < 0 && s.indexOf('+') < 0) return s;
    s = s.replace(/\+/g, ' ');
    try {
        return decodeURIComponent(s);
    } catch {
        // lone % sequences: decode what can be, byte by byte
        return s.replace(/%([0-9A-Fa-f]{2})/g,
                         (m, h) => String.fromCharCode(parseInt(h, 16)));
    }
}

function xmlEscape(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
            .replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const utf8Fatal = new TextDecoder('utf-8', { fatal: true });
const isUtf8 = typeof buffer.isUtf8 === 'function'
    ? buffer.isUtf8
    : (b) => { try { utf8Fatal.decode(b); return true; } catch { return false; } };

const ID_PREFIX = String(1 + crypto.randomInt(9))
    + String(crypto.randomInt(100000000)).padStart(8, '0');
let idSerial = 0;

function notificationId() {
    return ID_PREFIX + String(++idSerial).padStart(10, '0');
}

// ---------------------------------------------------------------------------
// SAS tokens

const SAS_CACHE = new Map();    // Authorization value -> verdict

function sasFail(detail) {
    return { status: 401, detail };
}

// the verdict on an Authorization value, independent of time and hub:
// {fail} or {se, aud (decoded, lower-cased, no scheme), skn}
function sasVerdict(auth) {
    let v = SAS_CACHE.get(auth);
    if (v !== undefined) return v;
    v = sasCheck(auth);
    if (SAS_CACHE.size >= SAS_CACHE_MAX) SAS_CACHE.clear();
    SAS_CACHE.set(auth, v);
    return v;
}

function sasCheck(auth) {
    const m = /^SharedAccessSignature\s+(\S+)$/.exec(auth);
    if (!m) {
        return { fail: sasFail('MalformedToken: The credentials contained in the '
            + 'authorization header are not in the SharedAccessSignature format.') };
    }
    const f = Object.create(null);
    for (const part of m[1].split('&')) {
        const eq = part.indexOf('=');
        if (eq < 0) return { fail: sasFail(`MalformedToken: field '${part}' has no value`) };
        const k = part.slice(0, eq);
        if (k in f) return { fail: sasFail(`MalformedToken: field '${k}' given twice`) };
        f[k] = part.slice(eq + 1);
    }
    for (const n of ['sr', 'sig', 'se', 'skn']) {
        if (!f[n]) return { fail: sasFail(`MalformedToken: the token has no '${n}' field`) };
    }
    if (!/^\d{1,12}$/.test(f.se)) {
        return { fail: sasFail(`MalformedToken: se '${f.se}' is not an integer`) };
    }
    const skn = pctDecode(f.skn);
    if (skn !== OPT.keyName) {
        return { fail: sasFail('InvalidSignature: The token has an invalid signature '
            + `(unknown SharedAccessKeyName '${skn}')`) };
    }
    const sr = pctDecode(f.sr);
    const want = crypto.createHmac('sha256', KEY_BYTES)
        .update(`${f.sr}\n${f.se}`, 'utf8').digest('base64');
    const sigOk = pctDecode(f.sig) === want;
    return {
        se: +f.se, sr, skn, sigOk,
        aud: sr.toLowerCase().replace(/^[a-z][a-z0-9+.-]*:\/\//, ''),
    };
}

function isoTime(se) {
    return new Date(se * 1000).toISOString().replace(/\.\d+Z$/, 'Z');
}

// null when the token is good for this hub now, else the error
function sasError(auth, hub) {
    const v = sasVerdict(auth);
    if (v.fail) return v.fail;
    if (v.se < Date.now() / 1000) {
        return sasFail(`ExpiredToken: The token is expired. Expiration time: '${isoTime(v.se)}'`);
    }
    const url = `${HOST}/${hub.toLowerCase()}/messages`;
    const a = v.aud;
    if (!(a.length > 0 && url.startsWith(a)
          && (a.length === url.length || a.endsWith('/') || url[a.length] === '/'))) {
        return sasFail(`InvalidAudience: The token audience '${v.sr}' does not `
                       + `match the request URL https://${url}`);
    }
    if (!v.sigOk) return sasFail('InvalidSignature: The token has an invalid signature.');
    return null;
}

// ---------------------------------------------------------------------------
// tag expressions (AcsTest::FakeNH::_tag_expr_parse): null or the error

const TAG_TOKEN = /\s*(?:(&&|\|\||!|\(|\))|\$InstallationId:\{([^{}]*)\}|\$UserId:\{([^{}]*)\}|([A-Za-z0-9_@#.:-]+))/y;

function instIdError(id) {
    if (id.length === 0 || id.length > 256) return 'must be 1-256 characters';
    if (!/^[\x21-\x7e]+$/.test(id) || /[/\\?#%{}"]/.test(id)) {
        return 'has a character that is not allowed';
    }
    return null;
}

function tagExprError(s) {
    if (!/\S/.test(s)) return 'empty expression';
    const t = [];
    TAG_TOKEN.lastIndex = 0;
    for (;;) {
        const at = TAG_TOKEN.lastIndex;
        if (/^\s*$/.test(s.slice(at))) break;
        const m = TAG_TOKEN.exec(s);
        if (!m) return `unexpected '${s.slice(at).trim().slice(0, 12)}' at offset ${at}`;
        if (m[1]) {
            t.push(m[1]);
        } else if (m[2] !== undefined) {
            const e = instIdError(m[2]);
            if (e) return `'$InstallationId:{${m[2]}}': installation id ${e}`;
            t.push('tag');
        } else if (m[3] !== undefined) {
            if (!/^[A-Za-z0-9_@#.:=-]{1,256}$/.test(m[3])) {
                return `'$UserId:{${m[3]}}': not a userId`;
            }
            t.push('tag');
        } else {
            if (m[4].length > 120) return `tag '${m[4]}' is longer than 120 characters`;
            t.push('tag');
        }
    }
    let i = 0, ntags = 0, ands = 0;
    const unary = () => {
        const k = t[i];
        if (k === '!') { i++; ands++; unary(); return; }
        if (k === '(') {
            i++;
            or();
            if (t[i] !== ')') throw new Error('missing )');
            i++;
            return;
        }
        if (k === 'tag') { ntags++; i++; return; }
        throw new Error(k === undefined ? 'expression ends where a tag was expected'
                                        : `'${k}' where a tag was expected`);
    };
    const and = () => {
        unary();
        while (t[i] === '&&') { i++; ands++; unary(); }
    };
    const or = () => {
        and();
        while (t[i] === '||') { i++; and(); }
    };
    try {
        or();
        if (i < t.length) throw new Error(`unexpected '${t[i]}'`);
    } catch (e) {
        return e.message;
    }
    if (ntags > (ands ? MAX_EXPR_TAGS : MAX_EXPR_TAGS_OR)) {
        return `${ntags} tags; an expression is limited to ${MAX_EXPR_TAGS_OR} `
            + `tags when it contains only ||, else to ${MAX_EXPR_TAGS}`;
    }
    return null;
}

// ---------------------------------------------------------------------------
// payloads

function contentType(v) {
    if (v === undefined) return [undefined, {}];
    const parts = v.split(';');
    const p = {};
    for (let i = 1; i < parts.length; i++) {
        const m = /^\s*([^=\s]+)\s*=\s*"?([^"]*)"?\s*$/.exec(parts[i]);
        if (m) p[m[1].toLowerCase()] = m[2];
    }
    return [parts[0].trim().toLowerCase(), p];
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function payloadError(fmt, j, tagSend) {
    const kind = tagSend ? 'a tag send' : 'a direct send';
    if (fmt === 'apple') {
        if (!isObject(j.aps)) return 'The apple notification body has no "aps" object';
    } else if (fmt === 'fcmv1') {
        const m = j.message;
        if (!isObject(m)) return 'The fcmv1 notification body has no "message" object';
        if ('token' in m) {
            return `message.token must not be set for ${kind} (Notification Hubs fills it)`;
        }
        for (const w of ['topic', 'condition']) {
            if (w in m) return `message.${w} must not be set for ${kind}`;
        }
        const where = [['message.data', m.data],
                       ['message.android.data', isObject(m.android) ? m.android.data : undefined]];
        for (const [name, d] of where) {
            if (d === undefined) continue;
            if (!isObject(d)) return `${name} must be an object of strings`;
            for (const k of Object.keys(d)) {
                if (typeof d[k] !== 'string') return `${name}.${k} must be a string`;
            }
        }
        if ('android' in m) {
            const a = m.android;
            if (!isObject(a)) return 'message.android must be an object';
            if ('ttl' in a && (typeof a.ttl !== 'string' || !/^\d+(?:\.\d{1,9})?s$/.test(a.ttl))) {
                return 'message.android.ttl must be a string like "60s"';
            }
            if ('priority' in a
                && (typeof a.priority !== 'string' || !/^(?:high|normal)$/i.test(a.priority))) {
                return 'message.android.priority must be "high" or "normal"';
            }
        }
    }
    return null;
}

// ---------------------------------------------------------------------------
// one request: validate

function err(status, detail, extra) {
    return { status, detail, headers: extra };
}

// the headers that must not be repeated, as bits; the length test spares
// most names the lower-casing
const DUP = new Map([
    ['host', 1], [':authority', 2], ['authorization', 4],
    ['servicebusnotification-format', 8],
    ['servicebusnotification-devicehandle', 16],
    ['servicebusnotification-tags', 32],
]);
const DUP_LENGTHS = new Set([...DUP.keys()].map((k) => k.length));

function duplicates(raw) {
    let seen = 0, dup = 0;
    for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i];
        if (!DUP_LENGTHS.has(k.length)) continue;
        const b = DUP.get(k.toLowerCase());
        if (b === undefined) continue;
        if (seen & b) dup |= b; else seen |= b;
    }
    return dup;
}

// x: {proto, conn, method, target, h (lower-cased headers, as Node joins
// them), raw (as received), body}; sets x.hub, x.op, x.handle, x.tags,
// x.format; null when it is a valid push, else {status, detail}
function validate(x) {
    const h = x.h;
    const dup = duplicates(x.raw);
    x.handle = h['servicebusnotification-devicehandle'];
    x.format = h['servicebusnotification-format']?.toLowerCase();
    // 1. Host and SNI
    let host;
    if (x.proto === 'h2' && h[':authority'] !== undefined) {
        host = h[':authority'];
        if (dup & 2) return err(400, 'Bad Request - Invalid Hostname');
    } else {
        host = h.host;
        if (dup & 1) host = undefined;
    }
    if (host === undefined || host === '') {
        return err(400, 'Bad Request - Invalid Hostname: Host header missing');
    }
    const hm = /^([^:\s]+)(?::\d{1,5})?$/.exec(host);
    if (!hm) return err(400, `Bad Request - Invalid Hostname: '${host}'`);
    if (hm[1].toLowerCase() !== HOST) {
        return err(404, `Host '${host}' is not this namespace (${HOST})`);
    }
    const sni = x.conn.sni;
    if (typeof sni !== 'string' || sni.toLowerCase() !== HOST) {
        return err(400, `TLS SNI ${sni ? `'${sni}'` : 'missing'} does not match the Host ${HOST}`);
    }

    // 2. path and method
    const target = x.target || '';
    const qi = target.indexOf('?');
    const path = qi < 0 ? target : target.slice(0, qi);
    const query = qi < 0 ? '' : target.slice(qi + 1);
    if (/^\/[^/]+\/installations\/[^/]+$/.test(path)) {
        return err(501, 'installations are not modelled by this stand-in (AcsTest::FakeNH has them)');
    }
    const pm = /^\/([^/]+)\/messages\/?$/.exec(path);
    if (!pm) return err(404, `no such resource: ${path}`);
    const hub = HUBS.get(pctDecode(pm[1]).toLowerCase());
    if (hub === undefined) {
        return err(404, `hub '${pm[1]}' does not exist in namespace ${OPT.namespace}`);
    }
    x.hub = hub;
    if (x.method !== 'POST') {
        return err(405, `method ${x.method} not allowed on ${path}`, { allow: 'POST' });
    }

    // 3. query
    let api = null, napi = 0, direct = false;
    for (const p of query.split('&')) {
        if (p === '') continue;
        const eq = p.indexOf('=');
        const k = pctDecode(eq < 0 ? p : p.slice(0, eq)).toLowerCase();
        if (k === 'api-version') {
            napi++;
            api = eq < 0 ? '' : pctDecode(p.slice(eq + 1));
        } else if (k === 'direct') {
            direct = true;
        }
    }
    if (napi === 0) return err(400, 'The api-version query parameter is missing');
    if (napi > 1) return err(400, 'api-version given more than once');
    if (!API_VERSIONS.has(api)) {
        return err(400, `The api-version '${api}' is not supported (known: ${[...API_VERSIONS].join(' ')})`);
    }
    const tagsHdr = h['servicebusnotification-tags'];
    if (!direct && tagsHdr === undefined) {
        return err(400, 'stand-in refuses broadcast sends: direct missing and no '
                        + 'ServiceBusNotification-Tags header');
    }
    x.op = direct ? 'direct-send' : 'tag-send';
    if (!direct) x.tags = tagsHdr;

    // 4. SAS token
    const auth = h.authorization;
    if (auth === undefined || auth === '') {
        return err(401, 'MissingToken: The authorization header was not found.');
    }
    if (dup & 4) return err(401, 'MalformedToken: more than one Authorization header');
    const se = sasError(auth, hub);
    if (se) return se;
    if (!OPT.canSend) {
        if (api === API_VERSION) {
            return { status: 403, empty: true,
                     detail: `rule '${OPT.keyName}' lacks the Send right` };
        }
        return err(401, `Unauthorized: the rule '${OPT.keyName}' lacks the Send claim`);
    }

    // 5. headers
    const xv = h['x-ms-version'];
    if (xv !== API_VERSION) {
        return err(400, `x-ms-version header must be 2020-06, got ${xv === undefined ? 'none' : `'${xv}'`}`);
    }
    const fmtRaw = h['servicebusnotification-format'];
    if (fmtRaw === undefined) return err(400, 'ServiceBusNotification-Format header missing');
    const fmt = fmtRaw.toLowerCase();
    const template = !direct && fmt === 'template';
    if (!(FORMATS.has(fmt) || template) || (dup & 8)) {
        return err(400, `ServiceBusNotification-Format '${fmtRaw}' is not a valid platform `
            + '(apple, fcmv1, gcm, windows, browser, adm, baidu, xiaomi'
            + (direct ? ')' : ', template)'));
    }
    x.format = fmt;
    const handle = h['servicebusnotification-devicehandle'];
    if (direct) {
        if (handle === undefined || handle === '') {
            return err(400, 'ServiceBusNotification-DeviceHandle header missing or empty');
        }
        if (dup & 16) {
            return err(400, 'ServiceBusNotification-DeviceHandle given more than once');
        }
        if (/\s/.test(handle)) return err(400, 'The device handle has white space in it');
        if (fmt === 'apple' && !/^[0-9A-Fa-f]+$/.test(handle)) {
            return err(400, `The device handle '${handle}' is not a valid APNs token (hex)`);
        }
        if ((fmt === 'windows' || fmt === 'browser') && !/^https:\/\/\S+$/.test(handle)) {
            return err(400, `The device handle for '${fmt}' must be an https URL`);
        }
    } else {
        if (handle !== undefined) {
            return err(400, 'ServiceBusNotification-DeviceHandle is only for direct sends '
                            + '(stand-in refuses it on a tag send)');
        }
        if (dup & 32) {
            return err(400, 'ServiceBusNotification-Tags given more than once');
        }
        const te = tagExprError(tagsHdr);
        if (te) return err(400, `Invalid tag expression '${tagsHdr}': ${te}`);
    }
    const [ctype, cparam] = contentType(h['content-type']);
    if (fmt === 'windows') {
        const wt = (h['x-wns-type'] || '').toLowerCase();
        if (!WNS_TYPES.has(wt)) {
            return err(400, 'X-WNS-Type must be one of wns/toast, wns/tile, wns/badge, wns/raw');
        }
        const want = wt === 'wns/raw' ? 'application/octet-stream' : 'application/xml';
        if (ctype !== want) return err(415, `Content-Type for ${wt} must be ${want}`);
    } else if (ctype !== 'application/json'
               || (cparam.charset !== undefined && cparam.charset.toLowerCase() !== 'utf-8')) {
        return err(415, `Content-Type for '${fmt}' must be application/json, got `
                        + (h['content-type'] ?? 'none'));
    }
    if (fmt === 'apple' || template) {
        const pt = h['apns-push-type'];
        if (pt !== undefined && !PUSH_TYPES.has(pt)) return err(400, `apns-push-type '${pt}' is not valid`);
        const pr = h['apns-priority'];
        if (pr !== undefined && pr !== '5' && pr !== '10') {
            return err(400, `apns-priority '${pr}' must be 5 or 10`);
        }
        if (pt === 'background' && pr !== '5') {
            return err(400, 'apns-push-type background requires apns-priority 5');
        }
        const ex = h['apns-expiration'];
        if (ex !== undefined && !/^\d+$/.test(ex)) {
            return err(400, `apns-expiration '${ex}' must be an integer`);
        }
        const ci = h['apns-collapse-id'];
        if (ci !== undefined && Buffer.byteLength(ci) > 64) {
            return err(400, 'apns-collapse-id longer than 64 bytes');
        }
    }
    if (fmt === 'browser' && direct) {
        for (const k of ['Auth', 'P256DH']) {
            const v = h[k.toLowerCase()];
            if (v === undefined || v === '') return err(400, `browser format requires the ${k} header`);
        }
    }

    // 6. body
    const body = x.body;
    const blen = body.length;
    if (blen > MAX_REQUEST_BODY) {
        return err(413, `request body of ${blen} bytes exceeds ${MAX_REQUEST_BODY} bytes`);
    }
    if (template) {
        if (blen === 0) return err(400, 'The template notification body is empty');
        const j = parseJson(body);
        if (j === undefined) return err(400, 'The template notification body is not valid JSON');
        if (!isObject(j)) {
            return err(400, 'The template notification body must be a JSON object of string properties');
        }
        const seen = new Set();
        for (const k of Object.keys(j)) {
            if (typeof j[k] !== 'string') return err(400, `template property '${k}' must be a string`);
            const lk = k.toLowerCase();
            if (seen.has(lk)) {
                return err(400, `template property '${k}' given twice (names are not case-sensitive)`);
            }
            seen.add(lk);
        }
        return null;
    }
    const limit = FORMATS.get(fmt);
    if (blen === 0) return err(400, `The ${fmt} notification body is empty`);
    if (blen > limit) {
        return err(400, `The ${fmt} notification payload of ${blen} bytes exceeds ${limit} bytes`);
    }
    if (fmt === 'windows') {
        if ((h['x-wns-type'] || '').toLowerCase() !== 'wns/raw' && !/^\s*</.test(body.toString('latin1', 0, 64))) {
            return err(400, 'The windows notification body is not XML');
        }
        return null;
    }
    const j = parseJson(body);
    if (j === undefined) return err(400, `The ${fmt} notification body is not valid JSON`);
    if (!isObject(j)) return err(400, `The ${fmt} notification body is not a JSON object`);
    const pe = payloadError(fmt, j, !direct);
    if (pe) return err(400, pe);
    return null;
}

function parseJson(buf) {
    if (!isUtf8(buf)) return undefined;
    try {
        return JSON.parse(buf.toString('utf8'));
    } catch {
        return undefined;
    }
}

// ---------------------------------------------------------------------------
// one request: decide and answer

let journalFd = null;
if (OPT.journal) journalFd = fs.openSync(OPT.journal, 'a');

const EVENT_ID = /"eventId":"([^"]*)"/;
function journal(x, status, detail, extra) {
    const e = {
        time: x.time / 1000, proto: x.proto, conn: x.conn.id, req: x.n,
        hub: x.hub ?? null, op: x.op ?? null,
    };
    if (x.op === 'tag-send') e.tags = x.tags; else e.handle = x.handle ?? null;
    e.format = x.format ?? null;
    // the push itself, to tell a push sent twice from two pushes
    if (x.body && x.body.length) {
        e.body_sha1 = crypto.createHash('sha1').update(x.body).digest('hex').slice(0, 16);
        // the event a chat push is of: its payload's first "eventId"
        const m = EVENT_ID.exec(x.body.toString('latin1'));
        if (m) e.event = m[1];
    }
    e.status = status;
    e.delay_ms = x.delay ?? 0;
    if (detail) e.detail = detail;
    if (x.tid) e.tracking_id = x.tid;
    if (extra) Object.assign(e, extra);
    fs.writeSync(journalFd, JSON.stringify(e) + '\n');
}

// a request's body has been read: x.body is a Buffer (or null when over
// MAX_READ_BODY: answered 413 at once, the rest dropped as it comes)
function onComplete(x) {
    x.time = Date.now();
    x.t0 = performance.now();
    if (x.closed) return;
    if (x.body === null) {
        answer(x, err(413, `request body exceeds ${MAX_REQUEST_BODY} bytes (over ${MAX_READ_BODY} not read)`));
        return;
    }
    if (MODE.hang) {
        inFlightUp();
        x.counted = true;
        x.hung = true;
        S.hung++;
        if (journalFd !== null) journal(x, 0, null, { hang: true });
        return;
    }
    let r = validate(x);
    if (r === null) {
        if (MODE.throttle > 0 && inFlight >= MODE.throttle) {
            S.throttled++;
            CUR.throttled++;
            answer(x, err(429, 'Throttled: too many requests in flight for this namespace',
                          MODE.retry_after !== null ? { 'retry-after': String(MODE.retry_after) } : undefined));
            return;
        }
        r = MODE.fail
            ? err(MODE.fail, `stand-in fail mode: ${MODE.fail}`,
                  MODE.retry_after !== null ? { 'retry-after': String(MODE.retry_after) } : undefined)
            : { status: 201 };
    }
    inFlightUp();
    x.counted = true;
    const d = MODE.delay + (MODE.jitter ? Math.random() * MODE.jitter : 0);
    x.delay = Math.round(d);
    if (d >= 1) {
        x.due = x.t0 + d;
        x.timer = setTimeout(answerDue, d, x, r);
    } else {
        answer(x, r);
    }
}

// a timer may fire early by the age of the event loop's clock: never answer
// before the delay
function answerDue(x, r) {
    const left = x.due - performance.now();
    if (left > 0) x.timer = setTimeout(answerDue, left, x, r);
    else answer(x, r);
}

function answer(x, r) {
    x.timer = null;
    if (x.closed || x.answered) return;
    x.answered = true;
    if (x.counted) {
        inFlight--;
        x.counted = false;
    }
    const st = r.status;
    const tid = crypto.randomUUID();
    x.tid = tid;
    S.by_status[st] = (S.by_status[st] || 0) + 1;
    CUR.answered++;
    let body = null;
    let location;
    const hs = {
        trackingid: tid,
        'x-ms-correlation-request-id': crypto.randomUUID(),
        server: 'Microsoft-HTTPAPI/2.0',
        'strict-transport-security': 'max-age=31536000',
    };
    if (st === 201) {
        location = `https://${HOST}/${x.hub}/messages/${notificationId()}?api-version=${API_VERSION}`;
        hs.location = location;
    } else if (!r.empty) {
        const d = (r.detail || '').replace(/\.?\s*$/, '');
        body = Buffer.from(`<Error><Code>${st}</Code><Detail>`
            + xmlEscape(`${d}. TrackingId:${tid},TimeStamp:${httpDate()}`)
            + '</Detail></Error>', 'utf8');
        hs['content-type'] = 'application/xml; charset=utf-8';
    }
    if (r.headers) Object.assign(hs, r.headers);
    hs['content-length'] = body === null ? '0' : String(body.length);
    if (journalFd !== null) {
        journal(x, st, st === 201 ? null : r.detail, location ? { location } : null);
    }
    if (x.proto === 'h2') h2Respond(x, st, hs, body);
    else h1Respond(x, st, hs, body);
}

// the client went away before the answer
function onAbort(x) {
    if (x.closed) return;
    x.closed = true;
    if (x.timer) {
        clearTimeout(x.timer);
        x.timer = null;
    }
    if (x.answered) return;
    if (x.counted) {
        inFlight--;
        x.counted = false;
    }
    if (x.time !== undefined) {
        S.aborted++;
        if (journalFd !== null && !x.hung) journal(x, 0, 'the client went away', { aborted: true });
    }
}

function newRequest(proto, conn, method, target, h, raw) {
    S.requests++;
    S.by_protocol[proto]++;
    CUR.requests++;
    conn.nreq++;
    return {
        proto, conn, method, target, h, raw, n: conn.nreq, body: null,
        chunks: null, len: 0, time: undefined, closed: false,
        answered: false, counted: false, timer: null, stream: null,
        res: null, hub: undefined, op: undefined, handle: undefined,
        tags: undefined, format: undefined, delay: 0, tid: undefined,
        hung: false, t0: 0, due: 0,
    };
}

// ---------------------------------------------------------------------------
// HTTP/2 and HTTP/1.1

// h1 header names as NH writes them
const H1_NAMES = {
    trackingid: 'TrackingId', location: 'Location', server: 'Server',
    'strict-transport-security': 'Strict-Transport-Security',
    'content-type': 'Content-Type', 'content-length': 'Content-Length',
    'retry-after': 'Retry-After', allow: 'Allow',
};

const h2srv = http2.createServer({
    settings: { maxConcurrentStreams: OPT.maxStreams },
    maxSessionMemory: 256,
});
h2srv.setTimeout(0);
h2srv.on('session', (s) => {
    s.dhConn = s.socket.dhConn;
    s.on('error', () => {});
});
h2srv.on('sessionError', () => {});
// handlers shared by all HTTP/2 streams and HTTP/1.1 requests (no closures
// per request); the exchange is the stream's or request's dhX
function bodyData(c) {
    const x = this.dhX;
    if (x.len < 0) return;      // over MAX_READ_BODY: answered, the rest dropped
    x.len += c.length;
    if (x.len > MAX_READ_BODY) {
        x.len = -1;
        x.chunks = null;
        x.body = null;
        onComplete(x);
        return;
    }
    if (x.chunks === null) x.chunks = [c];
    else x.chunks.push(c);
}

function bodyEnd() {
    const x = this.dhX;
    if (x.len < 0) return;
    bodyDone(x);
}

function exchangeClosed() {
    onAbort(this.dhX);
}

function bodyDone(x) {
    const c = x.chunks;
    x.body = c === null ? EMPTY : c.length === 1 ? c[0] : Buffer.concat(c, x.len);
    x.chunks = null;
    onComplete(x);
}

const EMPTY = Buffer.alloc(0);

function noop() {}

function h2Respond(x, st, hs, body) {
    const stream = x.stream;
    if (stream.destroyed || stream.closed) return;
    hs[':status'] = st;
    try {
        if (body === null) {
            stream.respond(hs, { endStream: true });
        } else {
            stream.respond(hs);
            stream.end(body);
        }
    } catch {
        // the stream went away meanwhile
    }
}

h2srv.on('stream', (stream, headers, flags, raw) => {
    const x = newRequest('h2', stream.session.dhConn, headers[':method'],
                         headers[':path'], headers, raw);
    x.stream = stream;
    stream.dhX = x;
    stream.on('error', noop);
    stream.on('close', exchangeClosed);
    const cl = headers['content-length'];
    if (cl !== undefined && +cl > MAX_READ_BODY) {
        x.len = -1;
        x.body = null;
        stream.resume();
        onComplete(x);
        return;
    }
    stream.on('data', bodyData);
    stream.on('end', bodyEnd);
});

const h1srv = http.createServer();
h1srv.keepAliveTimeout = 600000;
h1srv.headersTimeout = 600000;
h1srv.requestTimeout = 0;
h1srv.timeout = 0;
h1srv.maxRequestsPerSocket = 0;
h1srv.on('clientError', (e, sock) => {
    if (sock.writable) sock.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else sock.destroy();
});
function h1Respond(x, st, hs, body) {
    const res = x.res;
    const out = {};
    for (const k of Object.keys(hs)) out[H1_NAMES[k] ?? k] = hs[k];
    res.writeHead(st, out);
    res.end(body === null ? undefined : body);
}

// Expect: 100-continue: no 100 for a body that will be refused unread
h1srv.on('checkContinue', (req, res) => {
    const cl = req.headers['content-length'];
    if (!(cl !== undefined && +cl > MAX_READ_BODY)) res.writeContinue();
    h1srv.emit('request', req, res);
});

h1srv.on('request', (req, res) => {
    const x = newRequest('h1', req.socket.dhConn, req.method, req.url,
                         req.headers, req.rawHeaders);
    x.res = res;
    req.dhX = x;
    res.dhX = x;
    res.on('close', exchangeClosed);
    req.on('error', noop);
    const cl = req.headers['content-length'];
    if (cl !== undefined && +cl > MAX_READ_BODY) {
        x.len = -1;
        x.body = null;
        req.resume();
        onComplete(x);
        return;
    }
    req.on('data', bodyData);
    req.on('end', bodyEnd);
});

// TLS in front of both; the ALPN result picks the server
const tlssrv = tls.createServer({
    cert: fs.readFileSync(OPT.cert),
    key: fs.readFileSync(OPT.certKey),
    ALPNProtocols: OPT.h1 ? ['http/1.1'] : ['h2', 'http/1.1'],
    minVersion: 'TLSv1.2',
});
tlssrv.on('tlsClientError', () => { S.tls_failures++; });
tlssrv.on('secureConnection', (sock) => {
    const conn = sock._parent && sock._parent.dhConn;
    if (!conn) {
        sock.destroy();
        return;
    }
    conn.sni = sock.servername;
    conn.proto = sock.alpnProtocol === 'h2' ? 'h2' : 'h1';
    S.conn_by_protocol[conn.proto]++;
    conn.sock = sock;
    sock.dhConn = conn;
    sock.setNoDelay(true);
    if (conn.proto === 'h2') h2srv.emit('connection', sock);
    else h1srv.emit('connection', sock);
});

// TCP: accepted here, counted, held for connect_delay, then handed to TLS
function onTcp(raw) {
    const conn = { id: ++connSerial, raw, sock: null, proto: null, sni: null, nreq: 0 };
    CONNS.add(conn);
    connsOpen++;
    S.conn_opened++;
    CUR.conns++;
    if (connsOpen > S.conn_max_open) S.conn_max_open = connsOpen;
    raw.on('close', () => {
        connsOpen--;
        CONNS.delete(conn);
    });
    raw.on('error', () => {});
    const handoff = () => {
        if (raw.destroyed) return;
        // tls.Server wraps the socket; the TLS socket finds conn as _parent's
        raw.dhConn = conn;
        tlssrv.emit('connection', raw);
    };
    if (MODE.connect_delay > 0) setTimeout(handoff, MODE.connect_delay);
    else handoff();
}

let listener = null;

function listen() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer({ pauseOnConnect: true }, onTcp);
        srv.once('error', reject);
        srv.listen({ port: PORT, host: OPT.address, backlog: 4096 }, () => {
            srv.removeListener('error', reject);
            srv.on('error', (e) => process.stderr.write(`distant-hub: listener: ${e.message}\n`));
            PORT = srv.address().port;
            listener = srv;
            resolve();
        });
    });
}

function dropAll() {
    for (const c of CONNS) {
        if (c.sock) c.sock.destroy();
        c.raw.destroy();
    }
}

async function setRefuse(on) {
    if (on && listener) {
        listener.close();
        listener = null;
        dropAll();
    } else if (!on && !listener) {
        await listen();
    }
    MODE.refuse = on;
}

// ---------------------------------------------------------------------------
// control port

function controlAnswer(res, st, obj) {
    const b = JSON.stringify(obj) + '\n';
    res.writeHead(st, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(b) });
    res.end(b);
}

async function changeMode(body) {
    let m;
    try {
        m = JSON.parse(body);
    } catch {
        return [400, { error: 'body is not JSON' }];
    }
    if (!isObject(m)) return [400, { error: 'body must be a JSON object' }];
    const next = { ...MODE };
    for (const k of Object.keys(m)) {
        const v = m[k];
        if (!MODE_KEYS.includes(k)) return [400, { error: `unknown mode key '${k}'` }];
        if (k === 'hang' || k === 'refuse') {
            if (typeof v !== 'boolean') return [400, { error: `${k} must be true or false` }];
        } else if (k === 'fail') {
            if (v !== null && v !== 0 && v !== false
                && !(Number.isInteger(v) && v >= 100 && v <= 599)) {
                return [400, { error: 'fail must be a status 100-599, 0 or null' }];
            }
        } else if (k === 'retry_after') {
            if (v !== null && !(Number.isInteger(v) && v >= 0 && v <= 86400)) {
                return [400, { error: 'retry_after must be 0-86400 seconds or null' }];
            }
        } else if (!(Number.isInteger(v) && v >= 0 && v <= 100000000)) {
            return [400, { error: `${k} must be a non-negative integer` }];
        }
        next[k] = k === 'fail' ? (v || 0) : v;
    }
    for (const k of MODE_KEYS) {
        if (k !== 'refuse') MODE[k] = next[k];
    }
    if (next.refuse !== MODE.refuse) {
        try {
            await setRefuse(next.refuse);
        } catch (e) {
            return [500, { error: `listen again on ${PORT}: ${e.message}` }];
        }
    }
    return [200, MODE];
}

function resetStats() {
    const t = newStats();
    t.conn_max_open = connsOpen;
    t.max_in_flight = inFlight;
    Object.assign(S, t);
    CUR = newSecond(Math.floor(Date.now() / 1000));
}

const ctl = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
        const u = req.url.replace(/\?.*$/, '');
        const key = `${req.method} ${u}`;
        if (key === 'GET /stats') return controlAnswer(res, 200, statsJson());
        if (key === 'GET /mode') return controlAnswer(res, 200, MODE);
        if (key === 'POST /mode') {
            const [st, o] = await changeMode(Buffer.concat(chunks).toString('utf8'));
            return controlAnswer(res, st, o);
        }
        if (key === 'POST /reset') {
            resetStats();
            return controlAnswer(res, 200, statsJson());
        }
        if (key === 'POST /drop') {
            const n = CONNS.size;
            dropAll();
            return controlAnswer(res, 200, { dropped: n });
        }
        return controlAnswer(res, 404, { error: `no ${key}` });
    });
});

// ---------------------------------------------------------------------------
// start and stop

let stopping = false;

function shutdown(why) {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`distant-hub: stopping (${why})\n`);
    clearInterval(ticker);
    if (listener) listener.close();
    dropAll();
    ctl.close();
    if (journalFd !== null) fs.closeSync(journalFd);
    setTimeout(() => process.exit(0), 50).unref();
}

// a bug must not take the stand-in down in the middle of a benchmark: it is
// logged and counted (stats.errors; t/009 expects none)
process.on('uncaughtException', (e) => {
    S.errors++;
    process.stderr.write(`distant-hub: uncaught: ${e && e.stack}\n`);
});

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

async function main() {
    if (!MODE.refuse) {
        await listen();
    } else if (PORT === 0) {
        usage('--refuse at start needs a --port');
    }
    await new Promise((resolve, reject) => {
        ctl.once('error', reject);
        ctl.listen(OPT.controlPort, '127.0.0.1', resolve);
    });
    const ready = { pid: process.pid, port: PORT, control_port: ctl.address().port };
    if (OPT.readyFile) {
        fs.writeFileSync(`${OPT.readyFile}.tmp`, JSON.stringify(ready) + '\n');
        fs.renameSync(`${OPT.readyFile}.tmp`, OPT.readyFile);
    }
    process.stderr.write(`distant-hub: listening on ${OPT.address}:${PORT} for ${HOST} `
        + `(${OPT.h1 ? 'http/1.1' : 'h2, http/1.1'}; hubs ${OPT.hubs.join(' ')}), `
        + `control 127.0.0.1:${ready.control_port}\n`);
}

main().catch((e) => {
    process.stderr.write(`distant-hub: ${e.message}\n`);
    process.exit(1);
});
