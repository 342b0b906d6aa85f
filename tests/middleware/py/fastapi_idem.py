#!/usr/bin/env python3
"""The tiny checkout behind asgi-idempotency-header 0.2.0 (PyPI, by snok/sondrelg; import
name `idempotency_header_middleware`), on FastAPI 0.165.0 served by uvicorn 0.55.0.

asgi-idempotency-header is a pure ASGI middleware "modelled after Stripe's
implementation": it caches the JSON answer of a POST or PATCH carrying an
`Idempotency-Key` header and replays it, marked `Idempotent-Replayed: true`.
Wired as its README shows: app.add_middleware(IdempotencyHeaderMiddleware, backend=...)
with its MemoryBackend (the README's "memory-backend for testing"; the other one needs
Redis) and every argument at its default.

    python3 fastapi_idem.py --port N [--stock 60] [--cap 1000000] [--delay-ms 15]
"""

import sys

from checkout_core import SITE, Checkout, exit_on_sigterm, listen, parse_args

sys.path.insert(0, SITE)

import uvicorn  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from idempotency_header_middleware import IdempotencyHeaderMiddleware  # noqa: E402
from idempotency_header_middleware.backends import MemoryBackend  # noqa: E402

args = parse_args()
checkout = Checkout(args.stock, args.cap, args.delay_ms)

app = FastAPI()
app.add_middleware(IdempotencyHeaderMiddleware, backend=MemoryBackend())


@app.get("/v1/sandbox")
def sandbox():
    return checkout.sandbox()


@app.get("/_truth")
def truth():
    return checkout.truth()


@app.post("/v1/purchases/commit")
async def commit(request: Request):
    status, body = await checkout.handle_async(
        await request.body(), request.headers.get("idempotency-key"), request.headers.get("x-test-fail"))
    return JSONResponse(body, status_code=status)


if __name__ == "__main__":
    exit_on_sigterm()
    sock = listen(args.port)
    print(f"fastapi_idem.py (asgi-idempotency-header==0.2.0) listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
