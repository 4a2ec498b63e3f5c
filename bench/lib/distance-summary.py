#!/usr/bin/env python3
# The figures of bench/distance.sh: per case, from the stand-in's counters
# read before and after the measured window (HUB_IMPL=node:
# t/lib/distant-hub.mjs, GET /stats; HUB_IMPL=nginx: the stock hub's access
# log, stub_status and /proc, in the same shape, by bench/lib/stock-hub.py),
# wrk's output, the worker's CPU ticks and the module's status page.
#
#   distance-summary.py RUN CLK_TCK PER one NAME     a line for one case
#   distance-summary.py RUN CLK_TCK PER all          the table and the bars

import json
import os
import re
import sys

run, clk, per, what = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def wrk(name):
    out = {"rps": 0.0, "p50": None, "p99": None, "non2xx": 0, "errors": ""}
    try:
        text = open(os.path.join(run, "wrk", name + ".txt")).read()
    except OSError:
        return out
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+([\d.]+)(us|ms|s)" % pct, text, re.M)
        if m:
            v = float(m.group(1))
            out[key] = v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:.*", text)
    if m:
        out["errors"] = m.group(0)
    return out


def case(name):
    a, b = load(os.path.join(run, "snap", name + ".a.json")), load(os.path.join(run, "snap", name + ".b.json"))
    if not a or not b:
        return None
    ta, ca = map(float, open(os.path.join(run, "snap", name + ".a")).read().split())
    tb, cb = map(float, open(os.path.join(run, "snap", name + ".b")).read().split())
    secs = tb - ta

    def status(s, code):
        return int((s.get("by_status") or {}).get(code, 0))

    sent = status(b, "201") - status(a, "201")
    c429 = status(b, "429") - status(a, "429")
    conns_a, conns_b = a.get("connections") or {}, b.get("connections") or {}
    st = load(os.path.join(run, "snap", name + ".b.status"))
    host = {}
    for h in st.get("hub_hosts", []):
        if h.get("in_flight") is not None and (h.get("limit") or 0) > (host.get("limit") or 0):
            host = h
    w = wrk(name)
    cpu = (cb - ca) / clk
    return {
        "name": name,
        "secs": secs,
        "pushes_s": sent / secs if secs else 0,
        "sent": sent,
        "c429": c429,
        "opened": int(conns_b.get("opened", 0)) - int(conns_a.get("opened", 0)),
        "max_open": int(conns_b.get("max_open", 0)),
        "open": int(conns_b.get("open", 0)),
        "h2": int((b.get("by_protocol") or {}).get("h2", 0)) - int((a.get("by_protocol") or {}).get("h2", 0)),
        "cpu": cpu / secs * 100 if secs else 0,
        "us_push": cpu * 1e6 / sent if sent else 0,
        "hub_cpu": ((b.get("cpu") or {}).get("user_ms", 0) + (b.get("cpu") or {}).get("system_ms", 0)
                    - (a.get("cpu") or {}).get("user_ms", 0) - (a.get("cpu") or {}).get("system_ms", 0))
                   / 10.0 / secs if secs else 0,
        "limit": host.get("limit"),
        "srtt": (host.get("srtt_us") or 0) / 1000.0,
        "rtt_min": (host.get("rtt_min_us") or 0) / 1000.0,
        "proto": host.get("protocol"),
        "wrk": w,
    }


def line(c):
    w = c["wrk"]
    return ("  %-9s %8.0f pushes/s %7.1f deliv/s p50 %7.0f p99 %7.0f ms  %s %5.0f%% cpu %5.1f us/push"
            "  hub %3.0f%%  conns opened %d (most open %d, open %d)  429s %d  limit %s srtt %.1f min %.1f ms%s" % (
                c["name"], c["pushes_s"], w["rps"], w["p50"] or 0, w["p99"] or 0, c["proto"] or "?",
                c["cpu"], c["us_push"], c["hub_cpu"], c["opened"], c["max_open"], c["open"], c["c429"],
                c["limit"], c["srtt"], c["rtt_min"],
                ("  non-2xx %d" % w["non2xx"] if w["non2xx"] else "") + ("  " + w["errors"] if w["errors"] else "")))


if what == "one":
    c = case(sys.argv[5])
    print(line(c) if c else "  %s: no figures (see bench/results/distance)" % sys.argv[5])
    sys.exit(0)

cases = {}
for n in ("d0", "d40", "d150", "h1d0", "h1d150", "throttle"):
    c = case(n)
    if c:
        cases[n] = c

try:
    hub = open(os.path.join(run, "hub.txt")).read().strip()
except OSError:
    hub = "t/lib/distant-hub.mjs (HUB_IMPL=node)"
print("bench/distance.sh: one worker, the module's defaults, %d-event deliveries; hub stand-in: %s" % (per, hub))
for c in cases.values():
    print(line(c))

bars = []


def bar(text, value, ok):
    bars.append((text, value, ok))


def ratio(n, base):
    if n in cases and base in cases and cases[base]["pushes_s"]:
        return cases[n]["pushes_s"] / cases[base]["pushes_s"]
    return None


r = ratio("d40", "d0")
if r is not None:
    bar("hub at 40 ms: pushes/s >= 0.8 x at 0 ms", "%.2f" % r, r >= 0.8)
r = ratio("d150", "d0")
if r is not None:
    bar("hub at 150 ms: pushes/s >= 0.7 x at 0 ms", "%.2f" % r, r >= 0.7)
if "d150" in cases and cases["d150"]["wrk"]["p99"] is not None:
    p = cases["d150"]["wrk"]["p99"]
    bar("hub at 150 ms: a delivery answered within 1.5 s at p99", "%.0f ms" % p, p <= 1500)
r = ratio("h1d150", "h1d0")
if r is not None:
    bar("HTTP/1.1-only hub at 150 ms: pushes/s >= 0.35 x at 0 ms (same hub)", "%.2f" % r, r >= 0.35)
r = ratio("h1d150", "d0")
if r is not None:
    bar("HTTP/1.1-only hub at 150 ms: pushes/s >= 0.35 x the HTTP/2 hub at 0 ms", "%.2f" % r, r >= 0.35)
for c in cases.values():
    bar("%s: connections opened while measured <= most open at once" % c["name"],
        "%d <= %d" % (c["opened"], c["max_open"]), c["opened"] <= c["max_open"])
if "throttle" in cases:
    c = cases["throttle"]
    share = c["c429"] / float(c["sent"] + c["c429"]) if c["sent"] + c["c429"] else 0
    bar("throttling hub (429 past 300, 40 ms): 429s <= 10% of pushes", "%.1f%%" % (share * 100), share <= 0.10)
    bar("throttling hub: pushes/s >= 0.5 x what 300 in flight allow (3,750)", "%.0f" % c["pushes_s"],
        c["pushes_s"] >= 3750)

print()
for text, value, ok in bars:
    print("  %-4s %-72s %s" % ("PASS" if ok else "FAIL", text, value))
