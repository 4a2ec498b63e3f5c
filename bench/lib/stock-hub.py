#!/usr/bin/env python3
# The counters of bench/distance.sh's stock Notification Hubs stand-in
# (HUB_IMPL=nginx: a stock nginx with Debian's echo module, no code of this
# project answering), read with stock means only: its access log, its
# stub_status page and /proc.  Written in the shape of t/lib/distant-hub.mjs's
# GET /stats, so that bench/lib/distance-summary.py reads either stand-in.
#
#   stock-hub.py snap DIR PORT STATPORT CLK_TCK OUT [A.json]
#       a snapshot of the hub listening on PORT (DIR: the hub nginx's prefix,
#       with logs/access.log and logs/nginx.pid; STATPORT: its plain-HTTP
#       server with /stub (stub_status) and /conn ($connection)).  Without
#       A.json: the start of a measured window; with it (the start's
#       snapshot): its end, with the connections opened and the most open
#       since then.
#   stock-hub.py sample STATPORT FILE
#       every second until killed: a line "epoch open in_flight" appended to
#       FILE (stub_status's active connections and requests being written,
#       less this sampler's own connection and request)
#
# The access log's format (distance.sh writes it):
#   $msec $server_port $status $connection $connection_requests $server_protocol
# $connection is the TCP connection's number, also for an HTTP/2 stream
# (nginx numbers connections in the order it accepts them, across workers).
#
# What the snapshot holds (node's names):
#   by_status {code: n}, by_protocol {h1, h2}: requests of PORT logged so far
#     (since the case's log was emptied); distance-summary.py takes b - a
#   connections.opened: at the end only, connections numbered after the
#     start's own request that logged a request on PORT by the end: accepted
#     inside the window (one accepted in its last round trip and not yet
#     answered is missed)
#   connections.open: stub_status's active connections less this request's
#     own (the whole hub nginx: one hub is in use per case)
#   connections.max_open: at the end, the most open in the start's, the
#     end's and the sampler's readings (once a second)
#   max_in_flight: the same for requests in flight (stub_status "Writing")
#   cpu {user_ms, system_ms}: the hub nginx's worker processes (/proc)

import http.client
import json
import os
import re
import sys
import time


def stub(port):
    """(connection number, active connections, writing) over one connection."""
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    try:
        c.request("GET", "/conn")
        conn = int(c.getresponse().read().decode().strip())
        c.request("GET", "/stub")
        text = c.getresponse().read().decode()
    finally:
        c.close()
    active = int(re.search(r"Active connections:\s*(\d+)", text).group(1))
    writing = int(re.search(r"Writing:\s*(\d+)", text).group(1))
    return conn, active - 1, writing - 1


def workers(d):
    try:
        master = open(os.path.join(d, "logs", "nginx.pid")).read().strip()
        return open("/proc/%s/task/%s/children" % (master, master)).read().split()
    except OSError:
        return []


def cpu(d, clk):
    user = system = 0
    for pid in workers(d):
        try:
            f = open("/proc/%s/stat" % pid).read()
        except OSError:
            continue
        fields = f[f.rindex(")") + 2:].split()
        user += int(fields[11])
        system += int(fields[12])
    return {"user_ms": user * 1000.0 / clk, "system_ms": system * 1000.0 / clk}


def snap(d, port, statport, clk, out, since=None):
    conn, active, writing = stub(statport)
    by_status, by_proto, conns = {}, {"h1": 0, "h2": 0}, set()
    first = since["conn_no"] if since else None
    with open(os.path.join(d, "logs", "access.log"), errors="replace") as f:
        for line in f:
            p = line.split()
            if len(p) < 6 or p[1] != port:
                continue
            by_status[p[2]] = by_status.get(p[2], 0) + 1
            by_proto["h2" if p[5] == "HTTP/2.0" else "h1"] += 1
            if first is not None and first < int(p[3]) < conn:
                conns.add(p[3])
    max_open, max_writing = active, writing
    if since:
        max_open = max(max_open, since["connections"]["open"])
        max_writing = max(max_writing, since["max_in_flight"])
        try:
            for line in open(os.path.join(d, "logs", "samples.txt")):
                t, o, w = line.split()
                max_open, max_writing = max(max_open, int(o)), max(max_writing, int(w))
        except (OSError, ValueError):
            pass
    s = {
        "impl": "nginx",
        "time": time.time(),
        "conn_no": conn,
        "requests": sum(by_status.values()),
        "by_status": by_status,
        "by_protocol": by_proto,
        "connections": {"opened": len(conns), "open": active, "max_open": max_open},
        "in_flight": writing,
        "max_in_flight": max_writing,
        "cpu": cpu(d, clk),
    }
    with open(out + ".tmp", "w") as f:
        json.dump(s, f)
        f.write("\n")
    os.rename(out + ".tmp", out)


def sample(statport, path):
    with open(path, "a") as f:
        while True:
            t = time.time()
            try:
                _, active, writing = stub(statport)
                f.write("%.3f %d %d\n" % (t, active, writing))
                f.flush()
            except (OSError, ValueError, AttributeError):
                pass
            time.sleep(max(0.0, 1.0 - (time.time() - t)))


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "snap" and len(sys.argv) in (7, 8):
        since = json.load(open(sys.argv[7])) if len(sys.argv) == 8 else None
        snap(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], since)
    elif cmd == "sample" and len(sys.argv) == 4:
        sample(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: stock-hub.py snap DIR PORT STATPORT CLK_TCK OUT [A.json]"
                 " | sample STATPORT FILE")
