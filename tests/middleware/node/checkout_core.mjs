// The tiny checkout shared by the Node servers in this folder (express_idem.mjs,
// nest_idem.mjs). It knows nothing of idempotency: it never looks a key up, never stores
// an answer, never deduplicates. Every run past validation is an execution, and every
// execution is written to the truth that GET /_truth shows. Whatever idempotency a server
// has comes from the middleware wrapped around this.
//
// Hidden test switch: request header `X-Test-Fail: 500` answers 500
// {"error":{"code":"INTERNAL"}} before doing anything; `X-Test-Fail: crash` throws an
// unhandled error (the framework's own 500), again before doing anything.

import crypto from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

export const SANDBOX_IDS = {
  merchantId: "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d11",
  mandateId: "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d22",
  itemId: "5b7e1c2a-8d3f-4a6b-9c1e-2f4a6b8c0d33",
};
const PRICE = 700;
const CURRENCY = "EUR";

/** `--port N --stock N --cap N --delay-ms N` */
export function parseArgs(argv) {
  const opts = { port: 0, stock: 60, cap: 1000000, delayMs: 15 };
  const names = { "--port": "port", "--stock": "stock", "--cap": "cap", "--delay-ms": "delayMs" };
  for (let i = 0; i < argv.length; i += 2) {
    const name = names[argv[i]];
    const value = Number(argv[i + 1]);
    if (!name || !Number.isInteger(value) || value < 0) {
      console.error(`usage: --port N [--stock 60] [--cap 1000000] [--delay-ms 15]; bad: ${argv[i]} ${argv[i + 1]}`);
      process.exit(2);
    }
    opts[name] = value;
  }
  return opts;
}

/** Exit 0 on SIGTERM / SIGINT. */
export function exitOnSignals(close = async () => {}) {
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => {
      Promise.race([close(), sleep(500)]).finally(() => process.exit(0));
    });
  }
}

export class Checkout {
  constructor({ stock, cap, delayMs }) {
    this.initialStock = stock;
    this.cap = cap;
    this.delayMs = delayMs;
    this.stock = stock;
    this.spent = 0;
    this.executions = [];
    this.handlerCalls = 0;
  }

  sandbox() {
    return { ...SANDBOX_IDS, unitPriceMinor: PRICE, currency: CURRENCY, initialStock: this.initialStock, capMinor: this.cap };
  }

  truth() {
    return { executions: this.executions, handlerCalls: this.handlerCalls };
  }

  /** Returns [status, bodyObject]. Throws on `X-Test-Fail: crash`. */
  async handle(body, key, testFail) {
    this.handlerCalls += 1;
    if (testFail === "crash") throw new Error("X-Test-Fail: crash");
    if (testFail === "500") return [500, { error: { code: "INTERNAL" } }];
    const refusal = validate(body);
    if (refusal) return refusal;

    // Let concurrent requests with one key overlap here.
    if (this.delayMs > 0) await sleep(1 + Math.floor(Math.random() * this.delayMs));

    const { quantity: q, amountMinor: amount } = body;
    const intentId = crypto.randomUUID();
    let status, answer;
    if (this.stock < q) {
      [status, answer] = [200, { outcome: "DECLINED", intentId, failureCode: "OUT_OF_STOCK" }];
    } else if (this.spent + amount > this.cap) {
      [status, answer] = [200, { outcome: "DECLINED", intentId, failureCode: "MANDATE_REJECTED" }];
    } else {
      this.stock -= q;
      this.spent += amount;
      [status, answer] = [201, { outcome: "COMMITTED", intentId, ledgerTxnId: crypto.randomUUID(), chosenBucketId: "b-0" }];
    }
    Object.assign(answer, { amountMinor: amount, currency: CURRENCY, attempts: 1, replayed: false });
    this.executions.push({ key: key ?? null, intentId, outcome: answer.outcome });
    return [status, answer];
  }
}

function err(status, code, field) {
  return [status, { error: { code, field } }];
}

const isId = (v) => typeof v === "string";
const isCount = (v) => Number.isSafeInteger(v) && v >= 1;

/** null when the purchase is well-formed and names the sandbox's ids at the right price. */
export function validate(b) {
  if (typeof b !== "object" || b === null || Array.isArray(b)) return err(400, "MALFORMED_FIELD", "body");
  for (const f of ["merchantId", "mandateId", "itemId"]) if (!isId(b[f])) return err(400, "MALFORMED_FIELD", f);
  if (typeof b.agentId !== "string") return err(400, "MALFORMED_FIELD", "agentId");
  for (const f of ["quantity", "amountMinor"]) if (!isCount(b[f])) return err(400, "MALFORMED_FIELD", f);
  if (typeof b.currency !== "string") return err(400, "MALFORMED_FIELD", "currency");
  for (const f of ["merchantId", "mandateId", "itemId"]) if (b[f] !== SANDBOX_IDS[f]) return err(404, "NOT_FOUND", f);
  if (b.currency !== CURRENCY || b.amountMinor !== b.quantity * PRICE) return err(422, "INVALID_FIELD", "amountMinor");
  return null;
}
