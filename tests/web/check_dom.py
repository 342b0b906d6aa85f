#!/usr/bin/env python3
"""Check Mission Control's DOM (from `chromium --dump-dom`) against the view it shows.

  python3 tests/web/check_dom.py DOM.html VIEW.json

VIEW.json is the whole view the page should show (the fake server's /view.json after
the run). Checks every test hook: data-figure values (plain integers), body data-phase,
#verdict and #headline, one .fault band per started fault with its data attributes, and
data-series-len. Standard library only; exits 1 with the failures listed.
"""

import json
import sys
from html.parser import HTMLParser


class Dom(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack = []
        self.text = {}
        self.body = {}
        self.faults = []
        self.series_len = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body = a
        if "data-series-len" in a:
            self.series_len.append(a["data-series-len"])
        if "fault" in (a.get("class") or "").split():
            self.faults.append(a)
        key = None
        if "data-figure" in a:
            key = "figure:" + a["data-figure"]
        elif a.get("id") in ("verdict", "headline"):
            key = a["id"]
        if key in self.text:
            key = None  # the first one counts, as querySelector would
        self.stack.append((tag, key))
        if key:
            self.text[key] = ""

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _, key in self.stack:
            if key:
                self.text[key] += data


def main():
    dom = Dom()
    dom.feed(open(sys.argv[1], encoding="utf-8").read())
    view = json.load(open(sys.argv[2], encoding="utf-8"))
    bad = []

    def expect(what, got, want):
        if got != want:
            bad.append(f"{what}: got {got!r}, want {want!r}")

    committed = next((n for name, n in view.get("outcomes", []) if name == "COMMITTED"), 0)
    live = view.get("live", {})
    want = {
        "requests": view["requests"], "committed": committed, "occ_retries": view["occ_retries"],
        "done": view["done"], "total": view["total"],
        "oversells": live["oversells"], "duplicate_settlements": live["duplicate_settlements"],
        "ledger_drift": live["ledger_drift"], "mandate_breaches": live["mandate_breaches"],
    }
    for name, n in want.items():
        expect(f'data-figure="{name}"', dom.text.get("figure:" + name), str(n))
    expect("body data-phase", dom.body.get("data-phase"), view["phase"])
    expect("data-series-len", dom.series_len, [str(len(view["series"]))])

    verdict = view.get("verdict")
    if verdict:
        v = dom.text.get("verdict", "")
        if verdict["validity"].upper() not in v.split():
            bad.append(f"#verdict {v!r} does not say {verdict['validity'].upper()}")
        expect("#headline", dom.text.get("headline"), verdict["headline"])

    started = [f for f in view.get("faults", []) if f.get("started_ms") is not None]
    expect(".fault count", len(dom.faults), len(started))
    for f, el in zip(started, dom.faults):
        expect(f"fault {f['index']} data-region", el.get("data-region"), f["region"])
        expect(f"fault {f['index']} data-mode", el.get("data-mode"), f["mode"])
        expect(f"fault {f['index']} data-from-s", float(el.get("data-from-s", "nan")), round(f["started_ms"] / 1000, 3))
        to = f["healed_ms"] / 1000 if f.get("healed_ms") is not None else view["elapsed_s"]
        expect(f"fault {f['index']} data-to-s", float(el.get("data-to-s", "nan")), round(to, 3))

    if bad:
        print("check_dom: FAILED\n  " + "\n  ".join(bad))
        sys.exit(1)
    print(f"check_dom: ok ({len(want)} figures, phase {view['phase']}, {len(dom.faults)} fault bands, "
          f"{len(view['series'])} samples, verdict {verdict['validity'] if verdict else 'none'})")


if __name__ == "__main__":
    main()
