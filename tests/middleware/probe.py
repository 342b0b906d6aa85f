#!/usr/bin/env python3
"""Characterizes the idempotency of one running target by experiment (standard library
only). Every experiment uses fresh keys and reads GET /_truth before and after, so the
counts are executions the checkout really ran.

    python3 probe.py --url http://127.0.0.1:PORT [--trials 50] [--json OUT]

Start the target with a large --stock (e.g. --stock 1000000) so that nothing declines.
The numbered sections match README.md's questions 1-6.
"""

import argparse
import http.client
import json
import re
import threading
import urllib.parse
import uuid
from collections import Counter

SANDBOX = None
ARGS = None


def request(method, path, body=None, headers=None, timeout=10):
    u = urllib.parse.urlsplit(ARGS.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    except (TimeoutError, OSError) as e:
        return None, [], repr(e).encode()
    finally:
        conn.close()


def purchase(agent="agent-1", quantity=1, amount=None, **extra):
    doc = {"merchantId": SANDBOX["merchantId"], "mandateId": SANDBOX["mandateId"], "itemId": SANDBOX["itemId"],
           "agentId": agent, "quantity": quantity,
           "amountMinor": quantity * 700 if amount is None else amount, "currency": "EUR"}
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


def commit(body, key=None, extra_headers=None, path="/v1/purchases/commit", timeout=10):
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Idempotency-Key"] = key
    h.update(extra_headers or {})
    return request("POST", path, body, h, timeout=timeout)


def truth():
    _, _, body = request("GET", "/_truth")
    return json.loads(body)


def runs_of(key, before, after):
    """Executions recorded under `key` between two truths."""
    return sum(1 for e in after["executions"][len(before["executions"]):] if e["key"] == key)


def calls(before, after):
    return after["handlerCalls"] - before["handlerCalls"]


def fresh():
    return "probe-" + uuid.uuid4().hex


def show(label, answer, only_headers=None):
    status, headers, body = answer
    hs = [(k, v) for k, v in headers if only_headers is None or k.lower() in only_headers]
    text = " ".join(body.decode("utf-8", "replace").split())
    if len(text) > 160:
        text = text[:160] + "..."
    print(f"  {label}: {status} {text}")
    if hs:
        print("     headers: " + "; ".join(f"{k}: {v}" for k, v in hs))


INTERESTING = {"content-type", "idempotent-replayed", "idempotency-key", "retry-after", "x-cache-hit", "content-length"}


def section_keys(out):
    print("1. where the key travels; missing / empty / long keys")
    for label, key in [("no key", None), ("empty key", ""), ("256-char key", "k" * 256), ("257-char key", "k" * 257)]:
        t0 = truth()
        a1 = commit(purchase(), key)
        a2 = commit(purchase(), key)
        t1 = truth()
        n = sum(1 for e in t1["executions"][len(t0["executions"]):])
        show(f"{label}, first ", a1)
        show(f"{label}, second", a2, INTERESTING)
        print(f"     executions for the two: {n}")
        out[label] = {"first": a1[0], "second": a2[0], "executions": n,
                      "first_body": a1[2].decode("utf-8", "replace")[:300]}


def section_replay(out):
    print("2. replay: same key, same payload")
    key = fresh()
    t0 = truth()
    a1 = commit(purchase(), key)
    a2 = commit(purchase(), key)
    a3 = commit(purchase(), key)
    t1 = truth()
    show("first ", a1, INTERESTING)
    show("replay", a2, INTERESTING)
    same = a1[2] == a2[2] == a3[2]
    h1 = {k.lower() for k, _ in a1[1]}
    h2 = {k.lower() for k, _ in a2[1]}
    print(f"  replay bytes identical to the first: {same}; statuses {a1[0]}/{a2[0]}/{a3[0]}; "
          f"executions: {runs_of(key, t0, t1)}")
    print(f"  headers only on the first: {sorted(h1 - h2)}; only on the replay: {sorted(h2 - h1)}")
    out["replay"] = {"statuses": [a1[0], a2[0], a3[0]], "identical": same, "executions": runs_of(key, t0, t1),
                     "headers_first": a1[1], "headers_replay": a2[1]}

    print("   same key, same values in other bytes (keys reordered, spaces)")
    key = fresh()
    t0 = truth()
    a1 = commit(purchase(), key)
    doc = json.loads(purchase())
    reordered = json.dumps(dict(reversed(list(doc.items())))).encode()
    a2 = commit(reordered, key)
    spaced = json.dumps(doc, indent=1).encode()
    a3 = commit(spaced, key)
    t1 = truth()
    show("reordered", a2, INTERESTING)
    show("spaced   ", a3, INTERESTING)
    print(f"  executions: {runs_of(key, t0, t1)} (1 = both were replays)")
    out["same_values_other_bytes"] = {"reordered": a2[0], "spaced": a3[0], "executions": runs_of(key, t0, t1)}


def section_mismatch(out):
    print("3. same key, different payload")
    res = {}
    for label, other in [("other agentId", purchase(agent="agent-2")),
                         ("other quantity", purchase(quantity=2)),
                         ("invalid amount", purchase(amount=1))]:
        key = fresh()
        t0 = truth()
        a1 = commit(purchase(), key)
        a2 = commit(other, key)
        t1 = truth()
        show(f"{label}: first", a1)
        show(f"{label}: reuse", a2, INTERESTING)
        n = runs_of(key, t0, t1)
        replayed = a2[2] == a1[2]
        print(f"     executions: {n}; answer is the first's bytes: {replayed}")
        res[label] = {"status": a2[0], "body": a2[2].decode("utf-8", "replace")[:300], "executions": n,
                      "replayed_first": replayed}
    print(f"   same key, two different payloads at once ({ARGS.trials} trials)")
    execs, statuses = Counter(), Counter()
    for _ in range(ARGS.trials):
        key = fresh()
        t0 = truth()
        answers = burst(2, key, [purchase(agent="agent-1"), purchase(agent="agent-2")])
        t1 = truth()
        execs[runs_of(key, t0, t1)] += 1
        statuses["/".join(sorted(str(a[0]) for a in answers))] += 1
    print(f"     executions per trial: {dict(execs)}; status pairs: {dict(statuses)}")
    res["in_flight_other_payload"] = {"executions": {str(k): v for k, v in execs.items()}, "statuses": dict(statuses)}
    print("   same key, same payload, other path / query")
    key = fresh()
    t0 = truth()
    a1 = commit(purchase(), key)
    a2 = commit(purchase(), key, path="/v1/purchases/commit?x=1")
    a3 = commit(purchase(), key, path="/v1/other")
    t1 = truth()
    show("query ?x=1", a2, INTERESTING)
    show("/v1/other ", a3, INTERESTING)
    print(f"     executions: {runs_of(key, t0, t1)}")
    key = fresh()
    t0 = truth()
    commit(purchase(), key, path="/v1/other")
    b2 = commit(purchase(), key)
    t1 = truth()
    show("first on /v1/other, then commit", b2, INTERESTING)
    print(f"     executions of the commit: {runs_of(key, t0, t1)}")
    res["scope"] = {"query": a2[0], "other_path": a3[0], "other_path_first_then_commit": b2[0],
                    "commit_after_other_path_executions": runs_of(key, t0, t1)}
    out["mismatch"] = res


def burst(n, key, body):
    """n requests with one key, released together; returns their answers. `body` is one
    body for all, or a list of n bodies."""
    bodies = body if isinstance(body, list) else [body] * n
    barrier = threading.Barrier(n)
    answers = [None] * n
    u = urllib.parse.urlsplit(ARGS.url)

    def one(i):
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=15)
        try:
            conn.connect()
            barrier.wait()
            conn.request("POST", "/v1/purchases/commit", bodies[i],
                         {"Content-Type": "application/json", "Idempotency-Key": key})
            r = conn.getresponse()
            answers[i] = (r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read())
        except Exception as e:  # noqa: BLE001
            answers[i] = (None, {}, repr(e).encode())
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def section_concurrent(out):
    print(f"4. concurrent requests, same key and payload ({ARGS.trials} trials each)")
    for n in (2, 10):
        execs = Counter()
        statuses = Counter()
        bodies = Counter()
        follow = Counter()
        for _ in range(ARGS.trials):
            key = fresh()
            t0 = truth()
            answers = burst(n, key, purchase())
            t1 = truth()
            execs[runs_of(key, t0, t1)] += 1
            for status, headers, body in answers:
                marker = "+replayed" if headers.get("idempotent-replayed") else ""
                statuses[f"{status}{marker}"] += 1
                if status not in (200, 201):
                    text = " ".join(body.decode("utf-8", "replace").split()).replace(key, "<key>")
                    bodies[re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<uuid>", text)[:160]] += 1
            # and a calm retry afterwards
            t0 = truth()
            a = commit(purchase(), key)
            t1 = truth()
            follow[f"{a[0]} runs={runs_of(key, t0, t1)}"] += 1
        dist = ", ".join(f"{k} execution(s): {v} trials" for k, v in sorted(execs.items()))
        print(f"  {n} at once: {dist}")
        print(f"     statuses of all {n * ARGS.trials} answers: {dict(statuses)}")
        for b, c in bodies.most_common(3):
            print(f"     refusal body x{c}: {b}")
        print(f"     a retry after the burst: {dict(follow)}")
        out[f"concurrent_{n}"] = {"executions": {str(k): v for k, v in execs.items()}, "statuses": dict(statuses),
                                  "refusal_bodies": dict(bodies.most_common(3)), "retry_after": dict(follow)}


def section_errors(out):
    print("5. which first answers are stored")
    res = {}
    for label, first_body, first_headers in [
        ("500 (X-Test-Fail: 500)", purchase(), {"X-Test-Fail": "500"}),
        ("crash (X-Test-Fail: crash)", purchase(), {"X-Test-Fail": "crash"}),
        ("422 invalid amount", purchase(amount=1), {}),
        ("404 unknown item", purchase(itemId="00000000-0000-4000-8000-000000000000"), {}),
    ]:
        key = fresh()
        t0 = truth()
        a1 = commit(first_body, key, first_headers)
        a2 = commit(first_body if not first_headers else purchase(), key)
        t1 = truth()
        show(f"{label}: first", a1)
        show(f"{label}: retry", a2, INTERESTING)
        c = calls(t0, t1)
        n = runs_of(key, t0, t1)
        verdict = "re-run" if c >= 2 else "replayed/refused without running"
        print(f"     handler calls: {c}; executions: {n} -> retry {verdict}")
        res[label] = {"first": a1[0], "retry": a2[0], "handler_calls": c, "executions": n,
                      "retry_body": a2[2].decode("utf-8", "replace")[:300]}
    out["errors"] = res


def main():
    global ARGS, SANDBOX
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--trials", type=int, default=50)
    p.add_argument("--json")
    p.add_argument("--only", help="comma list of sections: keys,replay,mismatch,concurrent,errors")
    ARGS = p.parse_args()
    _, _, body = request("GET", "/v1/sandbox")
    SANDBOX = json.loads(body)
    out = {}
    sections = {"keys": section_keys, "replay": section_replay, "mismatch": section_mismatch,
                "concurrent": section_concurrent, "errors": section_errors}
    wanted = ARGS.only.split(",") if ARGS.only else list(sections)
    for name in wanted:
        sections[name](out)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
