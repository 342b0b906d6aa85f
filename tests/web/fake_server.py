#!/usr/bin/env python3
"""A stand-in for `swarm run --web ADDR`, to test Mission Control in a browser.

Serves the page's assets from assets/web (`/` is index.html) and plays a run:

  GET /events       text/event-stream: event `view`, first the whole view (the run so
                    far), then a new view every --frame-ms with only the last few samples
                    in `series`, through `resolving` and `auditing` to `done` with a
                    verdict. After the last view the stream stays open (comments as
                    keep-alive) unless --close-after-done.
  GET /view.json    the latest whole view.
  GET /report.html  a stub once the run is done (404 before, as the real server).

The run comes from --scenario FILE.json: either generator parameters (an object, see
DEFAULTS) or a recorded run ({"views": [...]} or a list of whole views). Without one, the
built-in parameters are used. --dump FILE writes the generated views and exits.

The clock starts at the first /events or /view.json request; --restart-per-connection
plays every /events connection from the beginning instead.

Headless Chromium's --virtual-time-budget waits while a fetch is pending, and an event
stream never ends: use --close-after-done (and --end-at-frame K for a mid-run state,
--retry-ms 600000 so no reconnect replaces what the page merged). --drop-every N cuts the
stream now and then to exercise reconnection.

  python3 tests/web/fake_server.py --port 8765 --scenario tests/web/failover.json --close-after-done &
  chromium --headless --no-sandbox --disable-gpu --user-data-dir=$(mktemp -d) \
      --screenshot=/tmp/mc-1920.png --window-size=1920,1080 --virtual-time-budget=10000 \
      http://127.0.0.1:8765/

Standard library only.
"""

import argparse
import hashlib
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "web"
TAIL_SAMPLES = 3

DEFAULTS = {
    "scenario": "failover",
    "seed": 7,
    "run_id": None,  # derived from the seed
    "target": "direct (in-process kernel, faults at the gateway)",
    "agents": 400000,
    "stock": 6000,
    "seconds": 30,  # running phase, one sample (and one frame) per second
    "in_flight": 256,
    "regions": ["us-east-1", "us-west-2", "eu-west-1"],
    # at: fraction of the running seconds; heal_s: null leaves it open to the end
    "faults": [
        {"region": "us-east-1", "mode": "crash", "at": 0.3, "heal_s": 6},
        {"region": "eu-west-1", "mode": "latency", "at": 0.62, "heal_s": 5},
    ],
    "leader": False,  # a watched cluster: leader changes at the first down fault
    "pause": None,  # {"at_s": 10, "frames": 3}: views with paused=true, time stopped
    "resolving_frames": 4,
    "auditing_frames": 3,
    "violations": {},  # e.g. {"oversells": 2, "at_s": 20}: an INVALID run
    "validity": None,  # force "unknown"
    "report": "reports/{scenario}-20261206T101010Z",
}


def load_params(obj):
    p = dict(DEFAULTS)
    p.update(obj or {})
    if not p.get("run_id"):
        p["run_id"] = hashlib.sha256(f"{p['scenario']}:{p['seed']}".encode()).hexdigest()[:12]
    return p


def generate(p):
    """Whole views, one per frame, from running to done."""
    rng = random.Random(p["seed"])
    n = int(p["seconds"])
    agents = int(p["agents"])
    stock = int(p["stock"])
    regions = list(p["regions"])
    share = [1.0 / len(regions)] * len(regions)
    conc = int(p["in_flight"])

    faults = []
    for i, f in enumerate(p["faults"]):
        start_ms = int(round(f["at"] * n * 1000)) + rng.randint(-300, 300)
        heal = f.get("heal_s")
        faults.append({
            "index": i,
            "region": f["region"],
            "mode": f["mode"],
            "trigger": f"{int(round(f['at'] * 100))}%",
            "start_ms": max(100, start_ms),
            "heal_ms": None if heal is None else max(100, start_ms) + int(heal * 1000) + rng.randint(0, 200),
        })

    def active(region, t_ms):
        for f in faults:
            if f["region"] == region and f["start_ms"] <= t_ms and (f["heal_ms"] is None or t_ms < f["heal_ms"]):
                return f
        return None

    def overlap(f, s):
        a, b = (s - 1) * 1000, s * 1000
        end = f["heal_ms"] if f["heal_ms"] is not None else 10**12
        return max(0, min(b, end) - max(a, f["start_ms"])) / 1000.0

    viol = dict(p.get("violations") or {})
    viol_at = viol.pop("at_s", n // 2)

    series = []
    cum = {"done": 0, "commits": 0, "declines": 0, "errors": 0, "occ": 0, "requests": 0,
           "replays": 0, "key_reused": 0, "timeouts": 0, "resets": 0, "unavailable": 0}
    reg_requests = [0] * len(regions)
    reg_errors = [0] * len(regions)
    commit_rate = stock / max(1.0, 0.55 * n)
    views = []

    def percentiles(scale):
        if not series:
            return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "p999_ms": 0.0, "max_ms": 0.0, "count": 0}
        p50 = sorted(s["p50_us"] for s in series)
        p99 = sorted(s["p99_us"] for s in series)
        med = p50[len(p50) // 2] / 1000 * scale
        hi = p99[int(len(p99) * 0.9)] / 1000 * scale
        return {
            "p50_ms": round(med, 2),
            "p90_ms": round(med * 2.6, 2),
            "p99_ms": round(hi, 2),
            "p999_ms": round(max(p99) / 1000 * scale * 1.4, 2),
            "max_ms": round(max(p99) / 1000 * scale * 2.3, 1),
            "count": cum["done"] if scale > 1 else cum["requests"],
        }

    def attempts():
        occ = cum["occ"]
        a = [0] * 16
        left = occ
        k = 1
        frac = 0.78
        while left > 0 and k < 16:
            c = int(left * frac) if k < 15 else left
            c = max(1, c // k)
            a[k] = c
            left -= c * k
            frac = 0.85
            k += 1
        a[0] = max(0, cum["done"] - sum(a[1:]))
        return a

    def region_rows(t_ms, in_flight):
        rows = []
        for i, name in enumerate(regions):
            f = active(name, t_ms)
            state = "UP"
            if f is not None:
                state = "SLOW:latency" if f["mode"] == "latency" else f"DOWN:{f['mode']}"
            last = None
            for g in faults:
                if g["region"] == name and g["start_ms"] <= t_ms:
                    if g["heal_ms"] is None or t_ms < g["heal_ms"]:
                        last = f"down {(t_ms - g['start_ms']) / 1000:.1f} s"
                    else:
                        last = f"back after {(g['heal_ms'] - g['start_ms']) / 1000:.1f} s"
            down = state.startswith("DOWN")
            rows.append({
                "name": name,
                "state": state,
                "requests": reg_requests[i],
                "errors": reg_errors[i],
                "in_flight": 0 if down else int(in_flight * share[i] * (1.5 if any(active(r, t_ms) for r in regions if r != name) else 1)),
                "last_fault": last,
            })
        return rows

    def fault_records(t_ms):
        out = []
        for f in faults:
            started = f["start_ms"] if f["start_ms"] <= t_ms else None
            healed = f["heal_ms"] if (f["heal_ms"] is not None and f["heal_ms"] <= t_ms) else None
            rec = {"index": f["index"], "region": f["region"], "mode": f["mode"], "trigger": f["trigger"],
                   "started_ms": started, "healed_ms": healed}
            if f["mode"] == "latency":
                rec["latency_ms"] = 200
                rec["jitter_ms"] = 50
            if started is not None:
                i = regions.index(f["region"]) if f["region"] in regions else 0
                rec["impact"] = [{
                    "region": f["region"],
                    "first_error_ms": started + 1,
                    "served_until_ms": started - 1,
                    "recovered_ms": None if healed is None else healed + 20,
                    "unavailable_ms": None if healed is None else healed + 20 - started,
                    "errors": reg_errors[i],
                }]
            out.append(rec)
        return out

    def outcomes():
        rows = [
            ["COMMITTED", cum["commits"]],
            ["OUT_OF_STOCK", cum["declines"]],
            ["MANDATE_REJECTED", 0],
            ["KEY_REUSED", cum["key_reused"]],
            ["RETRY_EXHAUSTED", 0],
            ["UNAVAILABLE", cum["unavailable"]],
            ["BAD_REQUEST", 0],
            ["INTERNAL", 0],
            ["TIMEOUT", cum["timeouts"]],
            ["CONNECTION_REFUSED", 0],
            ["CONNECTION_RESET", cum["resets"]],
            ["CONTRACT_VIOLATION", 0],
            ["IN_FLIGHT", 0],
            ["ABSENT", 0],
            ["DECLINED", 0],
            ["REPLAYS", cum["replays"]],
        ]
        for cls, v in [("network", cum["timeouts"] + cum["resets"]), ("200", cum["declines"] + cum["replays"]),
                       ("201", cum["commits"]), ("409", cum["key_reused"] + cum["declines"] // 100000),
                       ("503", cum["unavailable"])]:
            if v > 0:
                rows.append([f"HTTP {cls}", v])
        return rows

    def live(elapsed):
        d = {"oversells": 0, "duplicate_settlements": 0, "ledger_drift": 0, "mandate_breaches": 0,
             "errors": 0, "polls": int(elapsed * 2)}
        if elapsed >= viol_at:
            for k, v in viol.items():
                d[k] = v
        return d

    def view(elapsed, phase, status="", paused=False, verdict=None):
        t_ms = int(elapsed * 1000)
        in_flight = series[-1]["in_flight"] if series and phase == "running" else 0
        return {
            "scenario": p["scenario"],
            "seed": p["seed"],
            "run_id": p["run_id"],
            "target": p["target"],
            "elapsed_s": round(elapsed, 1),
            "done": cum["done"],
            "started": min(agents, cum["done"] + in_flight),
            "total": agents,
            "paused": paused,
            "phase": phase,
            "status": status,
            "series": [dict(s) for s in series],
            "faults": fault_records(t_ms),
            "latency_corrected": percentiles(1.35),
            "latency_raw": percentiles(1.0),
            "attempts": attempts(),
            "occ_retries": cum["occ"],
            "requests": cum["requests"],
            "in_flight": in_flight,
            "retry_exhausted": 0,
            "outcomes": outcomes(),
            "regions": region_rows(t_ms, in_flight),
            "live": live(elapsed),
            "leader": leader(t_ms),
            "verdict": verdict,
            "dropped_frames": 0,
        }

    def leader(t_ms):
        if not p.get("leader"):
            return None
        downs = [f for f in faults if f["mode"] != "latency" and f["start_ms"] <= t_ms]
        if not downs:
            return "n1"
        at = downs[0]["start_ms"] + 2600
        if t_ms < at:
            return "none (was n1)"
        return f"n2 (was n1, elected at {at / 1000:.1f} s)"

    for s in range(1, n + 1):
        ramp = 0.55 if s == 1 else 1.0
        # What is left over the seconds left, so a slowed run catches up without a spike.
        done_s = int((agents - cum["done"]) / (n - s + 1) * ramp * rng.uniform(0.94, 1.06))
        errors = 0
        p50 = rng.uniform(780, 1050)
        p99 = rng.uniform(9000, 15000)
        slow = 1.0
        for f in faults:
            ov = overlap(f, s)
            if ov <= 0:
                continue
            if f["mode"] == "latency":
                p50 *= 1 + 0.5 * ov
                p99 += 210000 * ov * rng.uniform(0.9, 1.1)
                slow *= 1 - 0.1 * ov
            else:
                e = int(done_s * 0.004 * ov * rng.uniform(0.7, 1.3))
                if s * 1000 - f["start_ms"] < 1500:
                    e *= 3  # the burst as clients find the region gone
                errors += e
                p99 = max(p99, 300000 * ov * rng.uniform(0.8, 1.0))
                p50 *= 1 + 0.2 * ov
                slow *= 1 - 0.12 * ov
                i = regions.index(f["region"]) if f["region"] in regions else 0
                reg_errors[i] += e
        done_s = int(done_s * slow) if s != n else agents - cum["done"]
        done_s = max(0, min(done_s, agents - cum["done"]))
        left = stock - cum["commits"]
        commits = min(left, max(0, int(commit_rate * rng.uniform(0.8, 1.2) * (ramp if s == 1 else 1))))
        if s == n:
            commits = min(left, commits)
        declines = max(0, done_s - commits)
        replays = errors // 3 + rng.randint(0, 3)
        occ = int(commits * 0.12 + declines * 0.0004 * rng.uniform(0.5, 1.5))
        requests = commits + declines + errors + replays
        in_flight = conc - rng.randint(0, 6) if s < n else rng.randint(0, 40)
        t_ms = s * 1000
        states = []
        for r in regions:
            f = active(r, t_ms)
            states.append("UP" if f is None else ("SLOW:latency" if f["mode"] == "latency" else f"DOWN:{f['mode']}"))
        series.append({
            "second": s, "commits": commits, "declines": declines, "errors": errors,
            "occ_retries": occ, "requests": requests, "p50_us": int(p50), "p99_us": int(p99),
            "in_flight": in_flight, "agents_done": done_s, "regions": states,
        })
        cum["done"] += done_s
        cum["commits"] += commits
        cum["declines"] += declines
        cum["errors"] += errors
        cum["occ"] += occ
        cum["requests"] += requests
        cum["replays"] += replays
        cum["key_reused"] += rng.randint(0, 2)
        cum["unavailable"] += int(errors * 0.55)
        cum["timeouts"] += int(errors * 0.3)
        cum["resets"] += errors - int(errors * 0.55) - int(errors * 0.3)
        alive = [i for i, st in enumerate(states) if not st.startswith("DOWN")] or [0]
        for i in alive:
            reg_requests[i] += requests // len(alive)
        views.append(view(s + rng.uniform(0.0, 0.2), "running"))
        pz = p.get("pause")
        if pz and pz.get("at_s") == s:
            for _ in range(int(pz.get("frames", 3))):
                views.append(view(s + 0.2, "running", paused=True))

    elapsed = n + 0.3
    doubt = 40 + rng.randint(0, 30)
    rf = int(p["resolving_frames"])
    for k in range(rf):
        elapsed += 0.4
        views.append(view(elapsed, "resolving",
                          f"resolving in-doubt executions: {int(doubt * (k + 1) / rf)}/{doubt} replayed"))
    af = int(p["auditing_frames"])
    for k in range(af):
        elapsed += 0.5
        views.append(view(elapsed, "auditing", "auditing: reading orders, ledger and mandates from the database"))

    lv = live(elapsed)
    bad = any(lv[k] for k in ("oversells", "duplicate_settlements", "ledger_drift", "mandate_breaches"))
    validity = p.get("validity") or ("invalid" if bad else "valid")
    a = attempts()
    tail = " ".join(f"{i + 1}×{c}" for i, c in enumerate(a) if c > 0 and i < 3)
    headline = (
        f"sold {cum['commits']} of {stock} units ({cum['commits']} settled purchases, from the database)"
        f" · oversells {lv['oversells']} · duplicate settlements {lv['duplicate_settlements']}"
        f" · ledger drift {lv['ledger_drift']} · mandate breaches {lv['mandate_breaches']}"
        f" · OCC retries {cum['occ']} (attempts {tail})"
    )
    verdict = {
        "validity": validity,
        "exit_code": {"valid": 0, "invalid": 1, "unknown": 2}.get(validity, 2),
        "headline": headline,
        "note": "report: " + p["report"].format(scenario=p["scenario"]),
    }
    views.append(view(elapsed + 0.2, "done", "", verdict=verdict))
    return views


def tail_of(v, samples):
    t = dict(v)
    t["series"] = v["series"][-samples:] if samples > 0 else []
    return t


class Player:
    """The run's clock: which frame is current."""

    def __init__(self, views, frame_s):
        self.views = views
        self.frame_s = frame_s
        self.t0 = None
        self.lock = threading.Lock()

    def start(self):
        with self.lock:
            if self.t0 is None:
                self.t0 = time.monotonic()
            return self.t0

    def index(self, t0=None):
        t0 = self.start() if t0 is None else t0
        return min(len(self.views) - 1, int((time.monotonic() - t0) / self.frame_s))

    def done(self, idx):
        return idx >= len(self.views) - 1


REPORT_STUB = """<!doctype html><meta charset="utf-8"><title>swarm report (stub)</title>
<body style="font-family:sans-serif;background:#111;color:#eee"><h1>swarm report</h1>
<p>A stub from tests/web/fake_server.py.</p></body>
"""

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8",
         ".png": "image/png"}


def make_handler(player, args):
    class Handler(BaseHTTPRequestHandler):
        server_version = "fake-swarm/1"

        def log_message(self, fmt, *a):
            if not args.quiet:
                sys.stderr.write("fake_server: " + (fmt % a) + "\n")

        def send_body(self, code, ctype, body):
            if isinstance(body, str):
                body = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/events":
                return self.events()
            if path == "/view.json":
                v = player.views[player.index()]
                return self.send_body(200, "application/json", json.dumps(v))
            if path == "/report.html":
                if player.done(player.index()):
                    return self.send_body(200, "text/html; charset=utf-8", REPORT_STUB)
                return self.send_body(404, "text/plain", "the report is written when the run ends")
            name = "index.html" if path == "/" else path.lstrip("/")
            f = (ASSETS / name).resolve()
            if "/" in name or f.parent != ASSETS.resolve() or not f.is_file():
                return self.send_body(404, "text/plain", "not found")
            return self.send_body(200, TYPES.get(f.suffix, "application/octet-stream"), f.read_bytes())

        def events(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            t0 = time.monotonic() if args.restart_per_connection else player.start()
            try:
                if args.retry_ms is not None:
                    self.wfile.write(f"retry: {args.retry_ms}\n\n".encode())
                idx = player.index(t0)
                self.send_view(player.views[idx], whole=True)
                last = idx
                sent = 0
                while True:
                    if player.done(last):
                        if args.close_after_done:
                            return
                        time.sleep(1.0)
                        self.wfile.write(b": keep-alive\n\n")
                        self.wfile.flush()
                        continue
                    next_at = t0 + (last + 1) * player.frame_s
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    idx = player.index(t0)
                    if idx > last:
                        # Frames skipped (a slow loop) widen the tail so no second is lost.
                        self.send_view(tail_of(player.views[idx], TAIL_SAMPLES + (idx - last - 1)))
                        last = idx
                        sent += 1
                        if args.drop_every and sent >= args.drop_every and not player.done(last):
                            return
            except (BrokenPipeError, ConnectionResetError):
                return

        def send_view(self, v, whole=False):  # whole: the caller passes the full view
            data = json.dumps(v, separators=(",", ":"))
            self.wfile.write(b"event: view\ndata: " + data.encode("utf-8") + b"\n\n")
            self.wfile.flush()

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--scenario", help="generator parameters or a recorded run (JSON)")
    ap.add_argument("--frame-ms", type=int, default=200, help="wall time between views")
    ap.add_argument("--restart-per-connection", action="store_true",
                    help="play the run from its start for every /events connection")
    ap.add_argument("--close-after-done", action="store_true", help="end the stream after the last view")
    ap.add_argument("--end-at-frame", type=int, default=None,
                    help="play only up to this frame (0-based), as if the run stopped there; "
                    "with --close-after-done, a mid-run state for a --virtual-time-budget screenshot")
    ap.add_argument("--retry-ms", type=int, default=None,
                    help="send `retry:` so the browser waits this long before reconnecting "
                    "(a long wait keeps what the page merged from the incremental events on screen)")
    ap.add_argument("--drop-every", type=int, default=None,
                    help="close each /events connection after this many incremental views "
                    "(the page reconnects and must replace its series with the next whole view)")
    ap.add_argument("--dump", help="write the generated views to this file and exit")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    obj = {}
    if args.scenario:
        obj = json.loads(Path(args.scenario).read_text())
    if isinstance(obj, list):
        views = obj
    elif isinstance(obj, dict) and "views" in obj:
        views = obj["views"]
    else:
        views = generate(load_params(obj))
    if args.end_at_frame is not None:
        views = views[: max(1, args.end_at_frame + 1)]
    if not views:
        sys.exit("no views")
    if args.dump:
        Path(args.dump).write_text(json.dumps({"views": views}))
        print(f"wrote {len(views)} views to {args.dump}")
        return

    player = Player(views, args.frame_ms / 1000.0)
    srv = ThreadingHTTPServer((args.host, args.port), make_handler(player, args))
    srv.daemon_threads = True
    print(f"fake swarm: http://{args.host}:{args.port}/ ({len(views)} views, {args.frame_ms} ms each)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
