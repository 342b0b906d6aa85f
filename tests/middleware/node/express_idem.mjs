// The tiny checkout behind express-idempotency@1.0.6 (npm, Ville de Montréal), on
// express@4.22.3.
//
// express-idempotency is an Express middleware "inspired from the Stripe implementation".
// Wired as its README shows: `app.post('*', idempotency())` with every option at its
// default (header `Idempotency-Key`, its built-in in-memory data adapter, only 2xx
// answers kept, a request must match the first one's url, method, query and body).
// On a replay it sends the stored answer itself and then still calls the route handler,
// which must ask `isHit(req)` and stop: that check, as the README prescribes, is the only
// idempotency code in this file. Its own refusals (409 in progress, 417 misuse) go to
// Express's default error handler (HTML); the app runs with env=production, as deployed.
//
//   node express_idem.mjs --port N [--stock 60] [--cap 1000000] [--delay-ms 15]

import express from "express";
import expressIdempotency from "express-idempotency";
import { Checkout, parseArgs, exitOnSignals } from "./checkout_core.mjs";

const { idempotency, getSharedIdempotencyService } = expressIdempotency;
const opts = parseArgs(process.argv.slice(2));
const checkout = new Checkout(opts);

const app = express();
app.set("env", "production");
app.use(express.json());

app.get("/v1/sandbox", (req, res) => res.json(checkout.sandbox()));
app.get("/_truth", (req, res) => res.json(checkout.truth()));

app.post("*", idempotency());

app.post("/v1/purchases/commit", async (req, res, next) => {
  if (getSharedIdempotencyService().isHit(req)) return; // the middleware already answered
  try {
    const [status, body] = await checkout.handle(req.body, req.get("idempotency-key"), req.get("x-test-fail"));
    res.status(status).json(body);
  } catch (e) {
    next(e);
  }
});

// A body that is not JSON never reaches the middleware: answer it in the checkout's shape.
app.use((e, req, res, next) => {
  if (e && e.type === "entity.parse.failed") return res.status(400).json({ error: { code: "MALFORMED_FIELD", field: "body" } });
  next(e);
});

const server = app.listen(opts.port, "127.0.0.1", () => {
  console.log(`express_idem.mjs (express-idempotency@1.0.6) listening on 127.0.0.1:${server.address().port}`);
});
exitOnSignals(() => new Promise((r) => server.close(r)));
