#!/usr/bin/env python3
"""The tiny checkout behind django-idempotency-key 1.3.0 (PyPI, by yoyowallet; import name
`idempotency_key`), on Django 4.2.30 (the newest line its README lists) served by
waitress 3.0.2 with 16 threads.

django-idempotency-key is a Django middleware: a POST must carry `Idempotency-Key`; a
2xx answer is stored under sha256(key + path + method + body [+ Authorization]) and a
later request that hashes the same gets the stored answer back with its status set to
409. Wired as its README's first choice:
MIDDLEWARE = ['idempotency_key.middleware.IdempotencyKeyMiddleware'] with no
IDEMPOTENCY_KEY settings at all (in-process MemoryKeyStorage, ThreadLock, replays as 409).

Any multi-threaded WSGI server (waitress, gunicorn --threads, uWSGI threads,
runserver) runs requests side by side; 16 threads let ten concurrent requests overlap.

    python3 django_idem.py --port N [--stock 60] [--cap 1000000] [--delay-ms 15]
"""

import logging
import sys

from checkout_core import SITE, Checkout, dumps, exit_on_sigterm, listen, parse_args

sys.path.insert(0, SITE)

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

args = parse_args()
checkout = Checkout(args.stock, args.cap, args.delay_ms)

settings.configure(
    DEBUG=False,
    SECRET_KEY="swarm-middleware-test-target",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=["idempotency_key.middleware.IdempotencyKeyMiddleware"],
)
django.setup()


def json_response(status, body):
    response = HttpResponse(dumps(body), status=status, content_type="application/json")
    response["Content-Length"] = str(len(response.content))
    return response


def sandbox(request):
    return json_response(200, checkout.sandbox())


def truth(request):
    return json_response(200, checkout.truth())


def commit(request):
    if request.method != "POST":
        return json_response(405, {"error": {"code": "METHOD_NOT_ALLOWED"}})
    status, body = checkout.handle_sync(
        request.body, request.headers.get("Idempotency-Key"), request.headers.get("X-Test-Fail"))
    return json_response(status, body)


urlpatterns = [
    path("v1/sandbox", sandbox),
    path("_truth", truth),
    path("v1/purchases/commit", commit),
]

if __name__ == "__main__":
    from django.core.wsgi import get_wsgi_application
    import waitress

    exit_on_sigterm()
    logging.getLogger("waitress").setLevel(logging.ERROR)
    sock = listen(args.port)
    print(f"django_idem.py (django-idempotency-key==1.3.0) listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    waitress.serve(get_wsgi_application(), sockets=[sock], threads=16)
