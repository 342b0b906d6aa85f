"""The tiny checkout shared by the Python servers in this folder (fastapi_idem.py,
django_idem.py).

It knows nothing of idempotency: it never looks a key up, never stores an answer, never
deduplicates. Every run past validation is an execution, and every execution is written
to the truth that GET /_truth shows. Whatever idempotency a server has comes from the
middleware wrapped around this.

Hidden test switch: request header `X-Test-Fail: 500` answers 500
{"error":{"code":"INTERNAL"}} before doing anything; `X-Test-Fail: crash` raises an
unhandled exception (the framework's own 500), again before doing anything.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import threading
import time
import uuid

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")

SANDBOX_IDS = {
    "merchantId": "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d11",
    "mandateId": "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d22",
    "itemId": "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d33",
}
PRICE = 700
CURRENCY = "EUR"


def parse_args(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--stock", type=int, default=60)
    p.add_argument("--cap", type=int, default=1000000)
    p.add_argument("--delay-ms", type=int, default=15)
    return p.parse_args(argv)


def exit_on_sigterm():
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def listen(port):
    """A listening socket on 127.0.0.1:port (port 0: any free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


def dumps(obj):
    """Compact JSON, as the checkout writes it."""
    return json.dumps(obj, separators=(",", ":"))


def _err(status, code, field):
    return status, {"error": {"code": code, "field": field}}


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def validate(raw):
    """None when the body is a well-formed purchase of the sandbox's item at the right
    price; otherwise (status, body)."""
    try:
        b = json.loads(raw)
    except ValueError:
        return _err(400, "MALFORMED_FIELD", "body")
    if not isinstance(b, dict):
        return _err(400, "MALFORMED_FIELD", "body")
    for f in ("merchantId", "mandateId", "itemId", "agentId"):
        if not isinstance(b.get(f), str):
            return _err(400, "MALFORMED_FIELD", f)
    for f in ("quantity", "amountMinor"):
        if not _is_count(b.get(f)):
            return _err(400, "MALFORMED_FIELD", f)
    if not isinstance(b.get("currency"), str):
        return _err(400, "MALFORMED_FIELD", "currency")
    for f in ("merchantId", "mandateId", "itemId"):
        if b[f] != SANDBOX_IDS[f]:
            return _err(404, "NOT_FOUND", f)
    if b["currency"] != CURRENCY or b["amountMinor"] != b["quantity"] * PRICE:
        return _err(422, "INVALID_FIELD", "amountMinor")
    return None


class Checkout:
    def __init__(self, stock, cap, delay_ms):
        self.initial_stock = stock
        self.cap = cap
        self.delay_ms = delay_ms
        self.stock = stock
        self.spent = 0
        self.executions = []
        self.handler_calls = 0
        # Keeps the stock counter itself consistent under threads; it is no
        # deduplication (nothing here looks at the key).
        self.lock = threading.Lock()

    def sandbox(self):
        return dict(SANDBOX_IDS, unitPriceMinor=PRICE, currency=CURRENCY,
                    initialStock=self.initial_stock, capMinor=self.cap)

    def truth(self):
        with self.lock:
            return {"executions": list(self.executions), "handlerCalls": self.handler_calls}

    def _before(self, raw, test_fail):
        with self.lock:
            self.handler_calls += 1
        if test_fail == "crash":
            raise RuntimeError("X-Test-Fail: crash")
        if test_fail == "500":
            return 500, {"error": {"code": "INTERNAL"}}
        return validate(raw)

    def _delay(self):
        return random.randint(1, self.delay_ms) / 1000 if self.delay_ms > 0 else 0

    def _decide(self, raw, key):
        b = json.loads(raw)
        q, amount = b["quantity"], b["amountMinor"]
        intent_id = str(uuid.uuid4())
        with self.lock:
            if self.stock < q:
                status, answer = 200, {"outcome": "DECLINED", "intentId": intent_id, "failureCode": "OUT_OF_STOCK"}
            elif self.spent + amount > self.cap:
                status, answer = 200, {"outcome": "DECLINED", "intentId": intent_id, "failureCode": "MANDATE_REJECTED"}
            else:
                self.stock -= q
                self.spent += amount
                status, answer = 201, {"outcome": "COMMITTED", "intentId": intent_id,
                                       "ledgerTxnId": str(uuid.uuid4()), "chosenBucketId": "b-0"}
            answer.update(amountMinor=amount, currency=CURRENCY, attempts=1, replayed=False)
            self.executions.append({"key": key, "intentId": intent_id, "outcome": answer["outcome"]})
        return status, answer

    def handle_sync(self, raw, key, test_fail):
        """(status, body) for one POST /v1/purchases/commit, for threaded servers."""
        refusal = self._before(raw, test_fail)
        if refusal:
            return refusal
        time.sleep(self._delay())
        return self._decide(raw, key)

    async def handle_async(self, raw, key, test_fail):
        """(status, body) for one POST /v1/purchases/commit, for asyncio servers."""
        refusal = self._before(raw, test_fail)
        if refusal:
            return refusal
        await asyncio.sleep(self._delay())
        return self._decide(raw, key)
