// The tiny checkout behind @node-idempotency/nestjs@1.0.4 (npm, "Race-Condition free",
// "RFC compliant"), which pins @node-idempotency/core@1.0.7 and its memory storage adapter
// @node-idempotency/storage-adapter-memory@1.0.2; on NestJS 10.4.22 with Express.
//
// Wired as its README shows: NodeIdempotencyModule.forRootAsync({ storage: { adapter:
// "memory" } }) and the @Idempotent() decorator on the commit handler, every idempotency
// option at its default (header `Idempotency-Key`, keys of at most 256 characters, a key
// optional, answers kept 24 h, key scoped to method + path, body fingerprinted).
// The checkout's refusals are thrown as HttpException (the NestJS way), so the interceptor
// sees them as errors.
//
// Plain JavaScript: the decorators are applied by hand instead of with TypeScript syntax.
//
//   node nest_idem.mjs --port N [--stock 60] [--cap 1000000] [--delay-ms 15]

import "reflect-metadata";
import { Module, Controller, Get, Post, Body, Headers, Res, HttpException } from "@nestjs/common";
import { NestFactory } from "@nestjs/core";
import express from "express";
import { NodeIdempotencyModule, Idempotent } from "@node-idempotency/nestjs";
import { Checkout, parseArgs, exitOnSignals } from "./checkout_core.mjs";

const opts = parseArgs(process.argv.slice(2));
const checkout = new Checkout(opts);

class CheckoutController {
  sandbox() {
    return checkout.sandbox();
  }
  truth() {
    return checkout.truth();
  }
  async commit(body, key, testFail, res) {
    const [status, answer] = await checkout.handle(body, key, testFail);
    if (status >= 400) throw new HttpException(answer, status);
    res.status(status);
    return answer;
  }
}

// What `@Get("v1/sandbox") sandbox()` etc. would do in TypeScript.
function method(cls, name, decorators, params = []) {
  const proto = cls.prototype;
  params.forEach((p, i) => p(proto, name, i));
  const descriptor = Object.getOwnPropertyDescriptor(proto, name);
  for (const d of decorators.reverse()) d(proto, name, descriptor);
}
method(CheckoutController, "sandbox", [Get("v1/sandbox")]);
method(CheckoutController, "truth", [Get("_truth")]);
method(CheckoutController, "commit", [Idempotent(), Post("v1/purchases/commit")], [
  Body(),
  Headers("idempotency-key"),
  Headers("x-test-fail"),
  Res({ passthrough: true }),
]);
Controller()(CheckoutController);

class AppModule {}
Module({
  imports: [NodeIdempotencyModule.forRootAsync({ storage: { adapter: "memory" } })],
  controllers: [CheckoutController],
})(AppModule);

const app = await NestFactory.create(AppModule, { logger: ["error", "warn"], bodyParser: false });
// NestJS's own JSON parser, but a body that is not JSON is answered in the checkout's shape
// (it never reaches the interceptor either way).
app.use(express.json());
app.use((e, req, res, next) => {
  if (e && e.type === "entity.parse.failed") return res.status(400).json({ error: { code: "MALFORMED_FIELD", field: "body" } });
  next(e);
});
await app.listen(opts.port, "127.0.0.1");
console.log(`nest_idem.mjs (@node-idempotency/nestjs@1.0.4) listening on 127.0.0.1:${app.getHttpServer().address().port}`);
exitOnSignals(() => app.close());
