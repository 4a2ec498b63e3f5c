#!/usr/bin/env python3
"""The Event Grid side of bench/chaos.sh (stdlib only).

    chaos.py eventgrid PORT PATH USERS EVENTS PER RATE OUT TAG
        delivers EVENTS chat events to the recipients bench-r00001..USERS,
        PER to a delivery, RATE deliveries a second (open loop), as Event
        Grid does: a delivery answered anything but 2xx, or not answered in
        30 s, is delivered again (the same ids), after 2, 4, 8 ... at most
        16 s, until it is answered 2xx; OUT: JSON, per delivery its ids,
        attempts and the time from its first attempt to its 2xx; TAG makes
        the ids of a run its own (de-duplication would skip the same ids)
    chaos.py probe PORT STOPFILE OUT
        GET /probe every 50-100 ms until STOPFILE exists; OUT: JSON of the
        waits (ms), the longest first
    chaos.py count JOURNAL EVENTS_JSON
        the stand-in's journal (one JSON line per request) against the
        deliveries: per event and device, how many pushes the hub accepted;
        prints lost (0 accepted), duplicated (2 or more), requests per push
"""
import hashlib, json, os, random, socket, sys, threading, time

def request(port, method, path, body=b"", headers=None, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        h = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" \
            "Content-Length: %d\r\n" % (method, path, len(body))
        for k, v in (headers or {}).items():
            h += "%s: %s\r\n" % (k, v)
        s.sendall(h.encode() + b"\r\n" + body)
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


def event(user, eid):
    t = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)
    return {
        "id": eid,
        "topic": "/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c/resourceGroups/rg/providers/Microsoft.Communication/communicationServices/chaos",
        "subject": "thread/19:chaos@thread.v2/sender/8:acs:chaos-sender/recipient/" + user,
        "eventType": "Microsoft.Communication.ChatMessageReceived",
        "eventTime": stamp,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "data": {
            "messageBody": "chaos", "messageId": eid, "senderDisplayName": "Chaos",
            "threadId": "19:chaos@thread.v2", "type": "Text", "version": "1",
            "senderCommunicationIdentifier": {"rawId": "8:acs:chaos-sender"},
            "recipientCommunicationIdentifier": {"rawId": user},
        },
    }


def eventgrid(port, path, users, events, per, rate, out, tag):
    deliveries = []
    start = time.time()
    for d in range(0, events, per):
        ids = []
        evs = []
        for i in range(d, min(d + per, events)):
            eid = "c4a05%03x-%04x-4%03x-8000-%012x" % (
                int(hashlib.sha1(tag.encode()).hexdigest()[:3], 16), i >> 12, i & 0xfff, i)
            user = "8:acs:bench-r%05d" % (i % users + 1)
            ids.append([eid, user])
            evs.append(event(user, eid))
        deliveries.append({"ids": ids, "body": json.dumps(evs).encode(),
                           "attempts": 0, "statuses": [], "acked": None,
                           "first": None})
    headers = {"aeg-event-type": "Notification", "Content-Type": "application/json"}

    def deliver(dl):
        wait = 2
        dl["first"] = time.time()
        while True:
            dl["attempts"] += 1
            try:
                st = request(port, "POST", path, dl["body"], headers, timeout=30)
            except Exception:
                st = 0
            dl["statuses"].append(st)
            if 200 <= st < 300:
                dl["acked"] = time.time() - dl["first"]
                return
            time.sleep(wait)
            wait = min(wait * 2, 16)

    threads = []
    for i, dl in enumerate(deliveries):
        due = start + i / float(rate)
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=deliver, args=(dl,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    for dl in deliveries:
        del dl["body"]
    with open(out, "w") as f:
        json.dump({"deliveries": deliveries, "seconds": time.time() - start}, f)


def probe(port, stopfile, out):
    waits = []
    while not os.path.exists(stopfile):
        t0 = time.time()
        try:
            st = request(port, "GET", "/probe", timeout=10)
        except Exception:
            st = 0
        ms = (time.time() - t0) * 1000
        waits.append(ms if st == 200 else 1e6)
        time.sleep(random.uniform(0.05, 0.1))
    waits.sort(reverse=True)
    with open(out, "w") as f:
        json.dump({"probes": len(waits), "waits": waits[:50],
                   "over50": sum(1 for w in waits if w > 50)}, f)


def count(journal, deliveries_json):
    d = json.load(open(deliveries_json))
    want = {}
    for dl in d["deliveries"]:
        for eid, user in dl["ids"]:
            want[eid] = user
    accepted = {}
    events = set()
    requests = 0
    for line in open(journal):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        requests += 1
        if j.get("status") != 201:
            continue
        key = (j.get("body_sha1") or "", j.get("handle") or "")
        accepted[key] = accepted.get(key, 0) + 1
        events.add(j.get("event"))
    # the body names its event (the FCM data's messageId is the event id
    # here), and the handle its device: a key accepted twice is a push the
    # device got twice
    dups = sum(1 for k in accepted.values() if k > 1)
    pushes = len(accepted)
    # each event by its id: one the hub accepted no push of is lost
    lost = sum(1 for eid in want if eid not in events)
    acked = [dl["acked"] for dl in d["deliveries"] if dl["acked"] is not None]
    print("events %d, deliveries %d, acknowledged %d (the longest after %.1f s, attempts at most %d)"
          % (len(want), len(d["deliveries"]), len(acked), max(acked or [0]),
             max(dl["attempts"] for dl in d["deliveries"])))
    print("lost %d (events of which the hub accepted no push), duplicated %d (pushes the hub accepted twice)"
          % (lost, dups))
    print("requests to the hub %d for %d pushes: %.2f a push" % (requests, pushes, requests / float(pushes or 1)))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "eventgrid":
        p, path, users, events, per, rate, out, tag = sys.argv[2:10]
        eventgrid(int(p), path, int(users), int(events), int(per), float(rate), out, tag)
    elif cmd == "probe":
        probe(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif cmd == "count":
        count(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: see the top of " + sys.argv[0])
