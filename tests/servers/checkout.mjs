// An independent implementation of the checkout contract, for swarm's tests.
//
// Written from the contract alone, with nothing of swarm's code: Node's `http` module and
// an in-memory store (its database is its own; swarm cannot read it). It differs from
// `swarm serve` in every way the contract allows: pretty-printed JSON with `replayed`
// first, ids that are not UUIDs (`int_17`, `bkt-3`), an extra field, chunked transfer
// encoding, and `Connection: close` on every fifth answer. It names its stocked item in
// `GET /v1/sandbox` for swarm's discovery.
//
//   node checkout.mjs --port N [--bug NAME] [--stock 60] [--cap 1000000]
//                     [--shape zerorace|orders] [--tls-cert FILE --tls-key FILE]
//                     [--key-ttl-ms N]
//
// `--key-ttl-ms N` keeps a key N ms after it was stored, as idempotency stores with an
// expiry do (AWS Powertools keeps one an hour): a key sent again later is a new purchase.
//
// With a certificate it serves HTTPS through Node's `http2` module (nghttp2): HTTP/2 when
// the client's ALPN offers `h2`, HTTP/1.1 otherwise — another TLS and HTTP/2 stack than
// the one swarm's client and server share.
//
// Bugs: oversell, no-key-lookup, fresh-replay-ids, false-503, replay-drops-field,
// created-for-decline, top-level-503, commit-declined, fresh-marked-replayed,
// header-marked-replay (see checkout.py: the same faults, written again; here
// commit-declined strikes commits 1, 5, 9..., fresh-marked-replayed fresh answers 1, 6,
// 11..., and the replay header is lower-case `idempotent-replayed: true`). And quirks
// that are no bug: replay-layout (replays carry the same values, compact instead of
// pretty); request-id (every answer, fresh or replayed, ends with its own `requestId`, as
// an API that puts its request id in the body does); uuid-case (intent ids are UUIDs,
// upper-case in the fresh answer, lower-case in replays: one from memory, one from a
// `uuid` column).
//
// `--shape orders` serves another API instead of POST /v1/purchases/commit (the sandbox
// stays): POST /orders, key in `Cko-Idempotency-Key`, body {shop, budget, sku, buyer, qty,
// total, ccy}; 201 {"order": {id: "ord_N", state: "paid", total, ccy, bucket}} or 200
// {"order": {id, state: "rejected", reason: "sold_out" | "over_budget", total, ccy}}, with
// no replay flag in the body: a replay is the stored bytes and `idempotent-replayed: true`.
// A key reused for another body is 422 idempotency_key_reused. Its bug, orders-forget-key:
// the 1st, 4th, 7th... request whose key is stored is executed again as new (the store
// forgot the key): a new order, the stock taken again.

import http from "node:http";
import http2 from "node:http2";
import fs from "node:fs";
import crypto from "node:crypto";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => {
    if (a.startsWith("--")) pairs.push([a.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const port = Number(args.port);
const bug = args.bug || "";
const shape = args.shape || "zerorace";
const price = 700;
const currency = "EUR";
const merchantId = "6f1c2a9e-0000-4000-8000-00000000c0de";
const itemId = "6f1c2a9e-0000-4000-8000-0000000017e1";
const mandateId = "6f1c2a9e-0000-4000-8000-00000000a11d";
const buckets = [0, 1, 2, 3].map((i) => ({ id: `bkt-${i}`, available: 0 }));
const stock = Number(args.stock || 60);
buckets.forEach((b, i) => (b.available = Math.floor(stock / 4) + (i < stock % 4 ? 1 : 0)));
const cap = Number(args.cap || 1000000);
const keyTtlMs = Number(args["key-ttl-ms"] || Infinity);
const shards = [0, 1].map((i) => ({ id: `shd-${i}`, remaining: cap / 2 }));
const intents = new Map(); // key -> { fingerprint, snapshot, status, id }
let seq = 0;
let answered = 0;
let commits = 0; // commit-declined
let freshAnswers = 0; // fresh-marked-replayed
let storedHits = 0; // orders-forget-key
let requests = 0; // request-id

function pretty(obj) {
  return JSON.stringify(obj, null, 2);
}

function refuse(res, status, code, field, message) {
  send(res, status, pretty({ error: { code, field, message } }));
}

function send(res, status, text, extra = {}) {
  answered += 1;
  const headers = { "content-type": "application/json", ...extra };
  // HTTP/2 has no `Connection` header (an HTTP/2 response has `stream`).
  if (answered % 5 === 0 && res.stream === undefined) headers.connection = "close";
  res.writeHead(status, headers);
  // Two writes without a length: chunked transfer encoding.
  const cut = Math.floor(text.length / 2);
  res.write(text.slice(0, cut));
  res.end(text.slice(cut));
}

function shuffled(rows) {
  const out = rows.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function take(rows, field, amount, clamp) {
  for (const row of shuffled(rows)) {
    if (row[field] >= amount) {
      row[field] -= amount;
      return row;
    }
    if (clamp) {
      row[field] = Math.max(row[field] - amount, 0);
      return row;
    }
  }
  return null;
}

// Stock, then budget: the bucket taken, or the reason there is none (budget refused: the
// stock goes back).
function settle(quantity, amount) {
  const bucket = take(buckets, "available", quantity, bug === "oversell");
  if (!bucket) return { reason: "OUT_OF_STOCK" };
  if (!take(shards, "remaining", amount, false)) {
    bucket.available += quantity;
    return { reason: "MANDATE_REJECTED" };
  }
  return { bucket };
}

function replayOf(stored) {
  // header-marked-replay: the stored bytes as they are; only the header tells.
  if (bug === "header-marked-replay") return stored.snapshot;
  const doc = JSON.parse(stored.snapshot);
  doc.replayed = true;
  if (bug === "fresh-replay-ids") {
    doc.intentId = `int_${++seq}`;
    if (doc.ledgerTxnId) doc.ledgerTxnId = `txn_${seq}`;
  }
  if (bug === "replay-drops-field") delete doc.attempts;
  if (bug === "uuid-case") doc.intentId = doc.intentId.toLowerCase();
  // Re-serialised the same way, so a correct replay is byte-identical but for `replayed`;
  // `replay-layout` (not a bug: the same values in other bytes) writes it compact.
  return bug === "replay-layout" ? JSON.stringify(doc) : pretty(doc);
}

function commit(req, key) {
  const fingerprint = crypto
    .createHash("sha256")
    .update(JSON.stringify([req.merchantId, req.mandateId, req.itemId, req.agentId, req.quantity, req.amountMinor, req.currency]))
    .digest("hex");
  let stored = bug === "no-key-lookup" ? undefined : intents.get(key);
  if (stored && Date.now() - stored.at > keyTtlMs) {
    intents.delete(key);
    stored = undefined;
  }
  if (stored) {
    if (stored.fingerprint !== fingerprint) return [409, pretty({ error: { code: "KEY_REUSED", field: "Idempotency-Key", message: "used for another payload" } })];
    const marked = bug === "header-marked-replay" ? { "idempotent-replayed": "true" } : {};
    return [stored.status, replayOf(stored), marked];
  }
  if (req.merchantId !== merchantId || req.itemId !== itemId || req.mandateId !== mandateId)
    return [404, pretty({ error: { code: "NOT_FOUND", field: "itemId", message: "unknown" } })];
  if (req.currency !== currency || req.amountMinor !== req.quantity * price)
    return [422, pretty({ error: { code: "INVALID_FIELD", field: "amountMinor", message: "not quantity x unit price" } })];
  const id = bug === "uuid-case" ? (++seq, crypto.randomUUID().toUpperCase()) : `int_${++seq}`;
  const { bucket, reason } = settle(req.quantity, req.amountMinor);
  const tail = { amountMinor: req.amountMinor, currency: req.currency, attempts: 1, region: "eu-1" };
  const declinedDoc = (failureCode) => ({ replayed: false, outcome: "DECLINED", intentId: id, failureCode, ...tail });
  const doc = bucket
    ? { replayed: false, outcome: "COMMITTED", intentId: id, ledgerTxnId: `txn_${seq}`, chosenBucketId: bucket.id, ...tail }
    : declinedDoc(reason);
  let status = doc.outcome === "COMMITTED" ? 201 : 200;
  if (bug === "created-for-decline") status = 201;
  const snapshot = pretty(doc);
  intents.set(key, { fingerprint, snapshot, status, id, at: Date.now() });
  if (bug === "false-503" && doc.outcome === "COMMITTED")
    return [503, pretty({ error: { code: "RETRY_EXHAUSTED", field: null, message: "gave up (but committed)" } })];
  if (bug === "top-level-503" && doc.outcome === "COMMITTED")
    return [503, pretty({ code: "RETRY_EXHAUSTED", message: "gave up (but committed)" })];
  // commit-declined: the commit stands (stored above); this first answer denies it.
  if (bug === "commit-declined" && doc.outcome === "COMMITTED" && ++commits % 4 === 1)
    return [200, pretty(declinedDoc("OUT_OF_STOCK"))];
  if (bug === "fresh-marked-replayed" && ++freshAnswers % 5 === 1) return [status, pretty({ ...doc, replayed: true })];
  return [status, snapshot];
}

// --shape orders: POST /orders. Returns [status, text, extra headers].
function order(body, key) {
  let req;
  try {
    req = JSON.parse(body);
  } catch {
    req = null;
  }
  if (typeof req !== "object" || req === null) return [400, pretty({ error: { code: "invalid_request", param: "body" } })];
  for (const f of ["shop", "budget", "sku"])
    if (typeof req[f] !== "string" || !uuidRe.test(req[f])) return [400, pretty({ error: { code: "invalid_request", param: f } })];
  if (typeof req.buyer !== "string") return [400, pretty({ error: { code: "invalid_request", param: "buyer" } })];
  for (const f of ["qty", "total"])
    if (!Number.isInteger(req[f]) || req[f] < 1) return [400, pretty({ error: { code: "invalid_request", param: f } })];
  if (typeof req.ccy !== "string" || !/^[A-Z]{3}$/.test(req.ccy)) return [400, pretty({ error: { code: "invalid_request", param: "ccy" } })];
  const fingerprint = crypto
    .createHash("sha256")
    .update([req.shop, req.budget, req.sku, req.buyer, req.qty, req.total, req.ccy].join("\n"))
    .digest("hex");
  const stored = intents.get(key);
  // orders-forget-key: every third lookup that finds the key (the 1st, 4th, 7th...) misses.
  const forgot = stored && bug === "orders-forget-key" && ++storedHits % 3 === 1;
  if (stored && !forgot) {
    if (stored.fingerprint !== fingerprint) return [422, pretty({ error: { code: "idempotency_key_reused" } })];
    return [stored.status, stored.snapshot, { "idempotent-replayed": "true" }];
  }
  if (req.shop !== merchantId || req.budget !== mandateId || req.sku !== itemId) return [404, pretty({ error: { code: "not_found" } })];
  if (req.ccy !== currency || req.total !== req.qty * price) return [422, pretty({ error: { code: "invalid_total" } })];
  const id = `ord_${++seq}`;
  const { bucket, reason } = settle(req.qty, req.total);
  const placed = bucket
    ? { id, state: "paid", total: req.total, ccy: req.ccy, bucket: bucket.id }
    : { id, state: "rejected", reason: reason === "OUT_OF_STOCK" ? "sold_out" : "over_budget", total: req.total, ccy: req.ccy };
  const status = bucket ? 201 : 200;
  const snapshot = pretty({ order: placed });
  intents.set(key, { fingerprint, snapshot, status, id });
  return [status, snapshot, {}];
}

const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function parse(body) {
  let req;
  try {
    req = JSON.parse(body);
  } catch {
    return [null, "body"];
  }
  if (typeof req !== "object" || req === null) return [null, "body"];
  for (const f of ["merchantId", "mandateId", "itemId"]) if (typeof req[f] !== "string" || !uuidRe.test(req[f])) return [null, f];
  if (typeof req.agentId !== "string") return [null, "agentId"];
  for (const f of ["quantity", "amountMinor"]) if (!Number.isInteger(req[f]) || req[f] < 1) return [null, f];
  if (typeof req.currency !== "string" || !/^[A-Z]{3}$/.test(req.currency)) return [null, "currency"];
  return [req, null];
}

function handle(req, res) {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    if (req.method === "GET" && req.url === "/v1/sandbox") {
      return send(res, 200, pretty({ merchantId, mandateId, itemId, unitPriceMinor: price, currency, initialStock: stock, capMinor: cap }));
    }
    if (shape === "orders") {
      if (req.method !== "POST" || req.url !== "/orders") return send(res, 404, pretty({ error: { code: "not_found" } }));
      const key = req.headers["cko-idempotency-key"];
      if (!key) return send(res, 400, pretty({ error: { code: "missing_key" } }));
      const [status, text, extra] = order(Buffer.concat(chunks).toString(), key);
      return send(res, status, text, extra);
    }
    if (req.method !== "POST" || req.url !== "/v1/purchases/commit") return refuse(res, 404, "NOT_FOUND", "path", req.url);
    const key = req.headers["idempotency-key"];
    if (!key) return refuse(res, 400, "MALFORMED_FIELD", "Idempotency-Key", "missing");
    const [purchase, bad] = parse(Buffer.concat(chunks).toString());
    if (!purchase) return refuse(res, 400, "MALFORMED_FIELD", bad, "malformed");
    const [status, text, extra] = commit(purchase, key);
    if (bug === "request-id" && status < 300) {
      // The answer's own id, last: a replay is its original again but for it.
      const doc = JSON.parse(text);
      doc.requestId = `req_${++requests}`;
      return send(res, status, pretty(doc), extra);
    }
    send(res, status, text, extra);
  });
}

const server = args["tls-cert"]
  ? http2.createSecureServer(
      { cert: fs.readFileSync(args["tls-cert"]), key: fs.readFileSync(args["tls-key"]), allowHTTP1: true },
      handle,
    )
  : http.createServer(handle);
server.keepAliveTimeout = 5000;
server.listen(port, "127.0.0.1", () => console.log(`checkout.mjs on 127.0.0.1:${port} shape=${shape} bug=${bug || "none"}`));
