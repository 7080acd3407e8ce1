"""``rollwright codec-server``: the HTTP codec endpoint for the Temporal Web UI and ``temporal --codec-endpoint``.

Called by the CLI (``orchestrator.cli``), and by tests. The UI (in the operator's browser) and the ``temporal`` CLI
POST ``{"payloads": [...]}`` (protobuf JSON of ``temporal.api.common.v1.Payloads``) to ``/decode`` to show
encrypted histories, and to ``/encode`` to encrypt what they send (``temporal workflow start --codec-endpoint``).

The browser calls this server directly, from the UI's origin, so it answers CORS preflights for the configured
origins only. Whoever can reach ``/decode`` can read every history: set ``ROLLWRIGHT_CODEC_AUTH_TOKEN`` to require
``Authorization: Bearer <token>`` (the CLI sends it with ``--codec-auth 'Bearer <token>'``; the UI with its
``passAccessToken`` setting), and keep the server on a network only operators reach.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from orchestrator.codec import CodecError, EncryptionCodec

log = logging.getLogger(__name__)
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(codec: EncryptionCodec, *, cors_origins: Sequence[str] = (), auth_token: str | None = None) -> web.Application:
    """The aiohttp application: ``POST /encode``, ``POST /decode``, ``GET /healthz``; CORS for ``cors_origins``
    (``*`` allows any origin, without credentials)."""
    origins = set(cors_origins)

    def cors_headers(request: web.Request) -> dict[str, str]:
        origin = request.headers.get("Origin")
        if not origin or not (origin in origins or "*" in origins):
            return {}
        h = {"Access-Control-Allow-Origin": origin if origin in origins else "*",
             "Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": ALLOWED_HEADERS,
             "Access-Control-Max-Age": "600", "Vary": "Origin"}
        if origin in origins:
            h["Access-Control-Allow-Credentials"] = "true"
        return h

    @web.middleware
    async def cors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        cors = cors_headers(request)
        if request.method == "OPTIONS":  # preflight: never authenticated (browsers send no credentials on it)
            return web.Response(status=204 if cors else 403, headers=cors)
        if auth_token is not None and request.path != "/healthz":
            got = request.headers.get("Authorization", "")
            if not hmac.compare_digest(got.encode(), f"Bearer {auth_token}".encode()):
                return web.json_response({"error": "unauthorized"}, status=401, headers=cors)
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            e.headers.update(cors)
            raise
        resp.headers.update(cors)
        return resp

    def handler(decode: bool) -> Handler:
        async def go(request: web.Request) -> web.Response:
            try:
                payloads = json_format.Parse(await request.text(), Payloads(), ignore_unknown_fields=True)
            except json_format.ParseError as e:
                return web.json_response({"error": f"body is not Payloads JSON: {e}"}, status=400)
            try:
                out = await (codec.decode if decode else codec.encode)(payloads.payloads)
            except CodecError as e:
                # Which key is missing is useful to the operator; the data never leaves the server.
                log.warning("decode failed for namespace %s: %s", request.headers.get("X-Namespace", "?"), e)
                return web.json_response({"error": str(e)}, status=400)
            return web.json_response(json_format.MessageToDict(Payloads(payloads=out)))
        return go

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(middlewares=[cors_and_auth], client_max_size=64 * 1024 * 1024)
    app.router.add_post("/encode", handler(decode=False))
    app.router.add_post("/decode", handler(decode=True))
    app.router.add_get("/healthz", healthz)
    # Preflights reach the middleware only if a route matches the method.
    for path in ("/encode", "/decode"):
        app.router.add_route("OPTIONS", path, healthz)
    return app


def serve(codec: EncryptionCodec, host: str, port: int, *, cors_origins: Sequence[str], auth_token: str | None) -> None:
    log.info("codec server on http://%s:%d (encrypting key %r, CORS origins %s, auth %s)", host, port, codec.key_id,
             ", ".join(cors_origins) or "none", "bearer token" if auth_token else "off")
    web.run_app(make_app(codec, cors_origins=cors_origins, auth_token=auth_token), host=host, port=port,
                print=None, access_log=None)
