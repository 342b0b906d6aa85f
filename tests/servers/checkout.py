#!/usr/bin/env python3
"""An independent implementation of the checkout contract, for swarm's tests.

Written from the contract alone, with nothing of swarm's code: Python's standard library
only (http.server, sqlite3, json). It differs from `swarm serve` in every way the contract
allows: HTTP/1.0 (one connection per request), JSON with spaces after the colons and
`replayed` in the middle, an extra field, its own SQL. It keeps its state in a SQLite file
laid out in the reference schema (seeded with `swarm db seed`), so a full audit can read it.

    checkout.py --db PATH --port N [--bug NAME] [--api-key KEY]

Bugs, each a real class of fault:
  oversell              the stock condition is a clamp: sales go past stock
  no-key-lookup         the key is never looked up: every retry settles again
  fresh-replay-ids      a replay carries new ids (intentId, ledgerTxnId)
  false-503             commits, then answers 503 RETRY_EXHAUSTED
  replay-drops-field    a replay leaves out `attempts`
  created-for-decline   a DECLINED answer comes with 201
  top-level-503         as false-503, but the code at the top of the body, Zinc's layout:
                        {"code": "RETRY_EXHAUSTED", "message": ...} (no `error` object)
  commit-declined       the 1st, 5th, 9th... commit is kept (stored, ledger written) but
                        answered 200 DECLINED OUT_OF_STOCK; a retry replays the COMMITTED one
  fresh-marked-replayed the 1st, 6th, 11th... fresh answer says "replayed": true (the stored
                        snapshot does not, so replays are right)
  header-marked-replay  a replay is the stored bytes unchanged ("replayed": false) with the
                        header Idempotent-Replayed: true, Stripe's way of marking it
And one switch that is no bug: rate-limit answers every 7th purchase 429 RATE_LIMITED
before touching anything (the run must count it and stay valid).
It also serves Zinc's shape: POST /orders (key in the body), 409 already_exists with the
order id on a retry, GET /orders/{id}.
"""

import argparse
import ssl
import hashlib
import http.server
import json
import random
import sqlite3
import threading
import time
import uuid

ARGS = None
LOCAL = threading.local()


def db():
    conn = getattr(LOCAL, "conn", None)
    if conn is None:
        conn = sqlite3.connect(ARGS.db, timeout=30, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        LOCAL.conn = conn
    return conn


def dumps(obj):
    # The server's own layout: spaces after separators, keys in insertion order.
    return json.dumps(obj, separators=(", ", ": "))


class Refused(Exception):
    def __init__(self, status, code, field, message):
        super().__init__(message)
        self.status, self.code, self.field, self.message = status, code, field, message


def parse_purchase(body, key):
    try:
        req = json.loads(body)
    except ValueError:
        raise Refused(400, "MALFORMED_FIELD", "body", "not JSON")
    if not isinstance(req, dict):
        raise Refused(400, "MALFORMED_FIELD", "body", "not an object")
    out = {}
    for field in ("merchantId", "mandateId", "itemId"):
        value = req.get(field)
        try:
            out[field] = str(uuid.UUID(value))
        except (TypeError, ValueError, AttributeError):
            raise Refused(400, "MALFORMED_FIELD", field, "not a UUID")
    if not isinstance(req.get("agentId"), str):
        raise Refused(400, "MALFORMED_FIELD", "agentId", "not a string")
    out["agentId"] = req["agentId"]
    for field in ("quantity", "amountMinor"):
        value = req.get(field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Refused(400, "MALFORMED_FIELD", field, "not a positive integer")
        out[field] = value
    currency = req.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
        raise Refused(400, "MALFORMED_FIELD", "currency", "not an ISO-4217 code")
    out["currency"] = currency
    if not key or len(key) > 255:
        raise Refused(400, "MALFORMED_FIELD", "Idempotency-Key", "missing")
    return out


def fingerprint(req):
    canon = "|".join(str(req[f]) for f in sorted(req))
    return hashlib.sha256(canon.encode()).hexdigest()


def replay(snapshot):
    return snapshot.replace('"replayed": false', '"replayed": true', 1)


POSTS = __import__("itertools").count(1)
COMMITS = __import__("itertools").count(1)
FRESH = __import__("itertools").count(1)


def commit(req, key):
    """One purchase. Returns (status, body text, extra headers)."""
    conn = db()
    fp = fingerprint(req)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if ARGS.bug != "no-key-lookup":
            row = conn.execute(
                "SELECT fingerprint, snapshot, outcome FROM intent WHERE idem_key = ?", (key,)
            ).fetchone()
            if row is not None:
                conn.execute("ROLLBACK")
                if row[0] != fp:
                    raise Refused(409, "KEY_REUSED", "Idempotency-Key", "used for another payload")
                headers = {}
                if ARGS.bug == "header-marked-replay":
                    headers["Idempotent-Replayed"] = "true"
                return 201 if row[2] == "COMMITTED" else 200, replayed_answer(row[1]), headers
        item = conn.execute(
            "SELECT merchant_id, unit_price_minor, currency FROM item WHERE item_id = ?",
            (req["itemId"],),
        ).fetchone()
        mandate = conn.execute(
            "SELECT merchant_id, currency FROM mandate WHERE mandate_id = ?", (req["mandateId"],)
        ).fetchone()
        if item is None or mandate is None:
            raise Refused(404, "NOT_FOUND", "itemId" if item is None else "mandateId", "unknown")
        if item[0] != req["merchantId"] or mandate[0] != req["merchantId"]:
            raise Refused(422, "INVALID_FIELD", "merchantId", "does not own the item and mandate")
        if req["amountMinor"] != req["quantity"] * item[1]:
            raise Refused(422, "INVALID_FIELD", "amountMinor", "not quantity x unit price")
        if req["currency"] != item[2] or req["currency"] != mandate[1]:
            raise Refused(422, "INVALID_FIELD", "currency", "not the item's and mandate's")
        intent_id = str(uuid.uuid4())
        bucket = take(conn, "bucket", "bucket_id", "item_id", "available",
                      req["itemId"], req["quantity"], ARGS.bug == "oversell")
        if bucket is None:
            return declined(conn, req, key, fp, intent_id, "OUT_OF_STOCK")
        shard = take(conn, "mandate_shard", "shard_id", "mandate_id", "remaining",
                     req["mandateId"], req["amountMinor"], False)
        if shard is None:
            # The claim is not kept: undo it by hand (one transaction, so this is exact).
            conn.execute("UPDATE bucket SET available = available + ? WHERE bucket_id = ?",
                         (req["quantity"], bucket))
            return declined(conn, req, key, fp, intent_id, "MANDATE_REJECTED")
        ledger_id = str(uuid.uuid4())
        amount = req["amountMinor"]
        conn.execute("INSERT INTO stock_claim VALUES (?, ?, ?, ?)",
                     (intent_id, bucket, req["itemId"], req["quantity"]))
        conn.execute("INSERT INTO mandate_debit VALUES (?, ?, ?, ?)",
                     (intent_id, shard, req["mandateId"], amount))
        conn.execute("INSERT INTO ledger_txn VALUES (?, ?, ?, ?)",
                     (ledger_id, intent_id, amount, req["currency"]))
        for account, signed in (("mandate:" + req["mandateId"], -amount),
                                ("merchant:" + req["merchantId"], amount)):
            conn.execute("INSERT INTO ledger_leg VALUES (?, ?, ?, ?, ?)",
                         (str(uuid.uuid4()), ledger_id, account, signed, req["currency"]))
        snapshot = dumps({
            "outcome": "COMMITTED",
            "intentId": intent_id,
            "replayed": False,
            "ledgerTxnId": ledger_id,
            "chosenBucketId": bucket,
            "amountMinor": amount,
            "currency": req["currency"],
            "attempts": 1,
            "server": "checkout.py",
        })
        store(conn, req, key, fp, intent_id, "COMMITTED", None, ledger_id, snapshot)
        conn.execute("COMMIT")
        if ARGS.bug == "false-503":
            raise Refused(503, "RETRY_EXHAUSTED", None, "gave up (but committed)")
        if ARGS.bug == "top-level-503":
            return 503, dumps({"code": "RETRY_EXHAUSTED", "message": "gave up (but committed)"}), {}
        if ARGS.bug == "commit-declined" and next(COMMITS) % 4 == 1:
            # Committed and stored as such; only this first answer says otherwise.
            return fresh(200, declined_snapshot(req, intent_id, "OUT_OF_STOCK"))
        return fresh(201, snapshot)
    except Refused:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def fresh(status, snapshot):
    """The answer of the request that executed the purchase (the stored snapshot as is)."""
    if ARGS.bug == "fresh-marked-replayed" and next(FRESH) % 5 == 1:
        return status, replay(snapshot), {}
    return status, snapshot, {}


def replayed_answer(snapshot):
    if ARGS.bug == "header-marked-replay":
        # The bytes as stored; the header (set by the caller) is the only mark.
        return snapshot
    text = replay(snapshot)
    if ARGS.bug == "fresh-replay-ids":
        doc = json.loads(text)
        doc["intentId"] = str(uuid.uuid4())
        if "ledgerTxnId" in doc:
            doc["ledgerTxnId"] = str(uuid.uuid4())
        text = dumps(doc)
    elif ARGS.bug == "replay-drops-field":
        doc = json.loads(text)
        doc.pop("attempts", None)
        text = dumps(doc)
    return text


def take(conn, table, id_col, owner_col, amount_col, owner, amount, clamp):
    """Conditional decrement of one of the owner's rows, tried in random order."""
    rows = [r[0] for r in conn.execute(
        f"SELECT {id_col} FROM {table} WHERE {owner_col} = ?"
        + ("" if clamp else f" AND {amount_col} >= ?"),
        (owner,) if clamp else (owner, amount),
    )]
    random.shuffle(rows)
    for row in rows:
        if clamp:
            sql = (f"UPDATE {table} SET {amount_col} = MAX({amount_col} - ?, 0) "
                   f"WHERE {id_col} = ?")
            changed = conn.execute(sql, (amount, row)).rowcount
        else:
            sql = (f"UPDATE {table} SET {amount_col} = {amount_col} - ? "
                   f"WHERE {id_col} = ? AND {amount_col} >= ?")
            changed = conn.execute(sql, (amount, row, amount)).rowcount
        if changed == 1:
            return row
    return None


def declined_snapshot(req, intent_id, code):
    return dumps({
        "outcome": "DECLINED",
        "intentId": intent_id,
        "replayed": False,
        "failureCode": code,
        "amountMinor": req["amountMinor"],
        "currency": req["currency"],
        "attempts": 1,
        "server": "checkout.py",
    })


def declined(conn, req, key, fp, intent_id, code):
    snapshot = declined_snapshot(req, intent_id, code)
    store(conn, req, key, fp, intent_id, "DECLINED", code, None, snapshot)
    conn.execute("COMMIT")
    return fresh(201 if ARGS.bug == "created-for-decline" else 200, snapshot)


def store(conn, req, key, fp, intent_id, outcome, code, ledger_id, snapshot):
    conn.execute(
        "INSERT INTO intent (intent_id, idem_key, fingerprint, merchant_id, mandate_id, item_id, "
        "agent_id, quantity, amount_minor, currency, outcome, failure_code, ledger_txn_id, "
        "attempts, snapshot, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (intent_id, key, fp, req["merchantId"], req["mandateId"], req["itemId"], req["agentId"],
         req["quantity"], req["amountMinor"], req["currency"], outcome, code, ledger_id, 1,
         snapshot, int(time.time() * 1000)),
    )


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: the server closes every connection after its answer.
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def answer(self, status, text, headers=None):
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def error(self, e):
        self.answer(e.status, dumps({"error": {"code": e.code, "field": e.field,
                                               "message": e.message}}))

    def authorised(self):
        if not ARGS.api_key:
            return True
        if self.headers.get("Authorization") == "Bearer " + ARGS.api_key:
            return True
        self.error(Refused(401, "UNAUTHORIZED", "Authorization", "missing or wrong key"))
        return False

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def do_POST(self):
        if not self.authorised():
            return
        try:
            if self.path == "/v1/purchases/commit":
                raw = self.body()
                if ARGS.bug == "rate-limit" and next(POSTS) % 7 == 0:
                    # Not a bug: a throttle before anything is looked up or written.
                    raise Refused(429, "RATE_LIMITED", None, "slow down")
                key = self.headers.get("Idempotency-Key")
                if key is None:
                    try:
                        key = json.loads(raw).get("idempotencyKey")
                    except (ValueError, AttributeError):
                        key = None
                status, text, headers = commit(parse_purchase(raw, key), key)
                self.answer(status, text, headers)
            elif self.path == "/orders":
                raw = self.body()
                try:
                    doc = json.loads(raw)
                    key = doc.pop("idempotency_key", None)
                except (ValueError, AttributeError):
                    raise Refused(400, "MALFORMED_FIELD", "body", "not JSON")
                req = parse_purchase(json.dumps(doc), key)
                row = db().execute("SELECT intent_id, fingerprint FROM intent WHERE idem_key = ?",
                                   (key,)).fetchone()
                if row is not None and row[1] == fingerprint(req):
                    self.answer(409, dumps({"error": {"code": "already_exists",
                                                      "order_id": row[0]}}))
                    return
                status, text, headers = commit(req, key)
                self.answer(status, text, headers)
            else:
                self.error(Refused(404, "NOT_FOUND", "path", self.path))
        except Refused as e:
            self.error(e)

    def do_GET(self):
        if not self.authorised():
            return
        if self.path.startswith("/orders/"):
            row = db().execute("SELECT snapshot FROM intent WHERE intent_id = ?",
                               (self.path[len("/orders/"):],)).fetchone()
            if row is None:
                self.error(Refused(404, "NOT_FOUND", "order", self.path))
            else:
                self.answer(200, row[0])
        elif self.path == "/healthz":
            self.answer(200, dumps({"ok": True}))
        else:
            self.error(Refused(404, "NOT_FOUND", "path", self.path))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bug", default="")
    parser.add_argument("--api-key", default="")
    # HTTPS through Python's ssl module (OpenSSL), HTTP/1.1 only: no ALPN is offered, so a
    # client asking for h2 must fall back.
    parser.add_argument("--tls-cert", default="")
    parser.add_argument("--tls-key", default="")
    ARGS = parser.parse_args()
    if ARGS.bug == "no-key-lookup":
        # The migration that forgot UNIQUE: nothing stops a key from settling twice.
        conn = db()
        conn.execute("DROP INDEX IF EXISTS intent_idem_key")
        conn.execute("CREATE INDEX intent_idem_key ON intent (idem_key)")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    if ARGS.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ARGS.tls_cert, ARGS.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"checkout.py on 127.0.0.1:{ARGS.port} bug={ARGS.bug or 'none'}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
