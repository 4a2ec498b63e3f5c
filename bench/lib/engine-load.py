#!/usr/bin/env python3
"""Timed clients of bench/engine.sh (plain HTTP/1.1 on loopback, stdlib only).

    engine-load.py status PORT INTERVAL_MS STOPFILE OUT
        GET /status every INTERVAL_MS until STOPFILE exists; OUT: one line
        per sample, "queue_depth in_flight hub_connections"
    engine-load.py calls PORT PATH CALL_TEMPLATE SECONDS INTERVAL_MS TAG OUT
                   [BACKLOG_PATH CHAT_TEMPLATE BACKLOG_TAG]
        one incoming-call delivery every INTERVAL_MS (open loop: each on its
        own connection, sent on schedule whatever the others do) for
        SECONDS; with a backlog, chat deliveries are POSTed one after the
        other meanwhile (the next once the previous is answered); OUT: JSON
    engine-load.py post PORT PATH TEMPLATE TAG COUNT [TIMEOUT]
        COUNT deliveries one after the other; prints "status seconds" each
    engine-load.py probe PORT PATH STOPFILE PID OUT
        GET PATH every 10-20 ms on a keep-alive connection until STOPFILE
        exists, and VmRSS/RssAnon of PID at each; OUT: JSON

Templates are delivery bodies whose event ids are written @@ID@@
(bench/lib/engine-helper.pl); each id is filled in distinct:
"TTTTRRRR-IIII-4000-b538-4cb8a2f71da6", TTTT the tag, RRRR the request,
IIII the event's index; a time written @@TIME@@ is the request's.
"""
import json, os, random, socket, sys, threading, time


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) \
        + ".%07dZ" % int((t % 1) * 1e7)


def fill(parts, tag, req):
    out = [parts[0]]
    for i, p in enumerate(parts[1:]):
        out.append("%s%04x-%04x-4000-b538-4cb8a2f71da6" % (tag, req % 65536, i))
        out.append(p)
    # a call happens now: "@@TIME@@" (engine-helper.pl call) is this moment
    return "".join(out).replace("@@TIME@@", now_rfc3339()).encode()


def template(path):
    with open(path) as f:
        return f.read().split("@@ID@@")


def read_response(s, buf=b""):
    """-> (status, body, rest of the buffer): one whole response"""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed before the headers")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length, chunked = None, False
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            length = int(v.strip())
        elif k == b"transfer-encoding" and b"chunked" in v.lower():
            chunked = True
    if chunked:
        while not buf.endswith(b"0\r\n\r\n"):
            d = s.recv(65536)
            if not d:
                break
            buf += d
        return status, buf, b""
    if length is None:
        length = 0
    while len(buf) < length:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    return status, buf[:length], buf[length:]


def request(port, method, path, body=b"", headers=(), timeout=60):
    """one request on a new connection -> (status, seconds)"""
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        h = "".join("%s: %s\r\n" % kv for kv in headers)
        s.sendall(("%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                   "Content-Length: %d\r\n%s\r\n" % (method, path, len(body), h)).encode()
                  + body)
        status, _, _ = read_response(s)
    finally:
        s.close()
    return status, time.perf_counter() - t0


EG = (("Content-Type", "application/json"), ("aeg-event-type", "Notification"))


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def cmd_status(port, interval, stopfile, out):
    interval = float(interval) / 1000
    port = int(port)
    s, buf = None, b""
    with open(out, "w") as f:
        while not os.path.exists(stopfile):
            t = time.perf_counter()
            try:
                if s is None:
                    s = socket.create_connection(("127.0.0.1", port), timeout=10)
                    buf = b""
                s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                _, body, buf = read_response(s, buf)
                j = json.loads(body)
                f.write("%d %d %d\n" % (j["queue_depth"], j["in_flight"],
                                        j["hub_connections"]))
                f.flush()
            except (OSError, ValueError, KeyError) as e:
                f.write("# %s\n" % e)
                s = None
            time.sleep(max(0, interval - (time.perf_counter() - t)))


def cmd_calls(port, path, call_tpl, seconds, interval, tag, out,
              bpath=None, btpl=None, btag=None):
    port, seconds, interval = int(port), float(seconds), float(interval) / 1000
    parts = template(call_tpl)
    calls, backlog, lock = [], [], threading.Lock()
    stop = threading.Event()

    def one_call(n):
        body = fill(parts, tag, n)
        try:
            st, dt = request(port, "POST", path, body, EG, timeout=30)
        except OSError as e:
            st, dt = 0, None
        with lock:
            calls.append((st, dt))

    def backlog_loop():
        bparts = template(btpl)
        n = 0
        body = fill(bparts, btag, n)
        while not stop.is_set():
            try:
                st, dt = request(port, "POST", bpath, body, EG, timeout=60)
            except OSError:
                st, dt = 0, None
            backlog.append((st, dt))
            n += 1
            body = fill(bparts, btag, n)

    bt = None
    if bpath:
        bt = threading.Thread(target=backlog_loop)
        bt.start()
        time.sleep(0.3)   # the first chat delivery is in
    threads = []
    t0 = time.perf_counter()
    n = 0
    while True:
        due = t0 + n * interval
        if due > t0 + seconds:
            break
        d = due - time.perf_counter()
        if d > 0:
            time.sleep(d)
        th = threading.Thread(target=one_call, args=(n,))
        th.start()
        threads.append(th)
        n += 1
    for th in threads:
        th.join()
    stop.set()
    if bt:
        bt.join()
    lat = [dt * 1000 for st, dt in calls if dt is not None]
    res = {
        "calls": len(calls),
        "statuses": {},
        "p50": pct(lat, 50), "p99": pct(lat, 99), "max": max(lat) if lat else None,
        "backlog": [{"status": st, "ms": dt * 1000 if dt else None} for st, dt in backlog],
    }
    for st, _ in calls:
        res["statuses"][str(st)] = res["statuses"].get(str(st), 0) + 1
    with open(out, "w") as f:
        json.dump(res, f)


def cmd_post(port, path, tpl, tag, count, timeout=60):
    parts = template(tpl)
    for n in range(int(count)):
        body = fill(parts, tag, n)
        try:
            st, dt = request(int(port), "POST", path, body, EG, timeout=float(timeout))
        except OSError as e:
            st, dt = 0, -1
        print(st, "%.3f" % dt, flush=True)


def rss(pid):
    v = {}
    try:
        with open("/proc/%s/status" % pid) as f:
            for line in f:
                k, _, x = line.partition(":")
                if k in ("VmRSS", "RssAnon"):
                    v[k] = int(x.split()[0])
    except OSError:
        pass
    return v.get("VmRSS", 0), v.get("RssAnon", 0)


def cmd_probe(port, path, stopfile, pid, out):
    port = int(port)
    lat, worst_at, bad = [], None, 0
    rss0 = rss(pid)
    peak = rss0
    s, buf = None, b""
    t_start = time.perf_counter()
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode()
    while not os.path.exists(stopfile):
        try:
            if s is None:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                buf = b""
            t = time.perf_counter()
            s.sendall(req)
            st, _, buf = read_response(s, buf)
            dt = (time.perf_counter() - t) * 1000
            lat.append(dt)
            if worst_at is None or dt > lat[worst_at[0]]:
                worst_at = (len(lat) - 1, t - t_start)
            if st != 200:
                bad += 1
        except OSError:
            bad += 1
            s = None
        r = rss(pid)
        peak = (max(peak[0], r[0]), max(peak[1], r[1]))
        time.sleep(random.uniform(0.010, 0.020))
    with open(out, "w") as f:
        json.dump({"probes": len(lat), "bad": bad, "p50": pct(lat, 50),
                   "p99": pct(lat, 99), "max": max(lat) if lat else None,
                   "max_at_s": worst_at[1] if worst_at else None,
                   "rss0": rss0, "rss_peak": peak, "rss_end": rss(pid)}, f)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"status": cmd_status, "calls": cmd_calls, "post": cmd_post,
     "probe": cmd_probe}[cmd](*args)
