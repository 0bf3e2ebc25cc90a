"""The control plane: one HTTPS port answering boto3's ``iot`` and ``iot-data`` clients.

Route modules expose ``ROUTES`` = list of ``(service, method, path_regex, handler)``:
``service`` is "iot" or "iot-data" (told apart by the SigV4 credential scope in the
Authorization header: boto3's iot-data signs as "iotdata"); ``handler(ctx, request)``
(plain or async) returns ``(status, json_body)`` or raises :class:`AwsError`, rendered as
AWS's rest-json error (header ``x-amzn-ErrorType`` + body ``{"message": ...}``).

:func:`model_route` builds a route from botocore's service model, so ``request.params``
holds the operation's input members by name (from the path, query string, headers and
JSON body, typed as the model says) and missing required members are a 400.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

from fleetdesk.sandbox import strict_json
from fleetdesk.sandbox.awserror import AwsError
from fleetdesk.sandbox.sigv4 import SigV4Checker

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger(__name__)

__all__ = ["AwsError", "Request", "model_route", "model_routes", "ControlPlane"]

_SCOPE = re.compile(r"Credential=[^/,]+/\d{8}/[^/,]+/([^/,]+)/aws4_request")
_SIGNING_TO_SERVICE = {"iot": "iot", "iotdata": "iot-data", "iot-data": "iot-data"}
MAX_BODY_BYTES = 8 * 1024 * 1024  # S3 PutObject into the file store (firmware images)
MAX_API_BODY_BYTES = 256 * 1024  # every other API (AWS: job documents 32 KB, shadows 8 KB, Publish 128 KB)
LARGE_BODY_SERVICES = ("s3", "dynamodb")  # S3 objects; DynamoDB items are up to 400 KB, batches more
_models: dict[str, Any] = {}


@dataclass
class Request:
    """One control-plane request as handlers see it.

    Attributes:
        method, path (percent-decoded per segment in ``path_params``), query (dict of str),
        headers (case-insensitive mapping), body (raw bytes), service ("iot"|"iot-data"),
        path_params (regex groups, unquoted), params (model members, see model_route).
    """

    method: str
    path: str
    query: dict
    headers: Any
    body: bytes
    service: str
    path_params: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    def json(self) -> dict:
        """The body as a JSON object ({} if empty); a 400 if it is not JSON."""
        if not self.body:
            return {}
        try:
            doc = strict_json.loads(self.body)
        except ValueError as exc:
            raise AwsError("InvalidRequestException", f"The request body is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise AwsError("InvalidRequestException", "The request body must be a JSON object")
        return doc


def service_model(service: str):
    """botocore's service model for "iot" or "iot-data" (cached)."""
    if service not in _models:
        import botocore.loaders
        import botocore.model

        loader = botocore.loaders.create_loader()  # lighter than a botocore Session
        _models[service] = botocore.model.ServiceModel(loader.load_service_model(service, "service-2"), service)
    return _models[service]


def _convert(value: str, shape, name: str):
    t = shape.type_name
    try:
        if t in ("integer", "long"):
            return int(value)
        if t in ("float", "double"):
            return float(value)
        if t == "boolean":
            if value.lower() not in ("true", "false"):
                raise ValueError(value)
            return value.lower() == "true"
    except ValueError as exc:
        raise AwsError("InvalidRequestException", f"{name}: {value!r} is not a valid {t}") from exc
    return value


_JSON_TYPES: dict[str, Any] = {
    "string": str, "integer": int, "long": int, "boolean": bool, "structure": dict, "map": dict,
    "list": list, "float": (int, float), "double": (int, float), "timestamp": (int, float, str)}


_patterns: dict[str, Any] = {}


def _pattern(text: str):
    """The model's pattern compiled for a whole-value match (None if Python cannot read it)."""
    if text not in _patterns:
        try:
            _patterns[text] = re.compile(text)
        except re.error:
            _patterns[text] = None
    return _patterns[text]


def _bad(where: str, why: str) -> AwsError:
    return AwsError("InvalidRequestException", f"{where} {why}")


def check_constraints(value, shape, where: str) -> None:
    """AWS's input rules from the model (what botocore validates client side and the service
    enforces): string length/pattern/enum, number range, list length."""
    meta = shape.metadata
    t = shape.type_name
    if t == "string" and isinstance(value, str):
        n = len(value)
        if "min" in meta and n < meta["min"]:
            raise _bad(where, f"must be at least {meta['min']} characters long")
        if "max" in meta and n > meta["max"]:
            raise _bad(where, f"must be at most {meta['max']} characters long (got {n})")
        rx = _pattern(meta["pattern"]) if "pattern" in meta else None
        if rx is not None and not rx.fullmatch(value):
            raise _bad(where, f"{value[:80]!r} does not match the pattern {meta['pattern']}")
        if shape.enum and value not in shape.enum:
            raise _bad(where, f"must be one of {', '.join(shape.enum)}")
    elif t in ("integer", "long", "float", "double") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if "min" in meta and value < meta["min"]:
            raise _bad(where, f"must be at least {meta['min']} (got {value})")
        if "max" in meta and value > meta["max"]:
            raise _bad(where, f"must be at most {meta['max']} (got {value})")
    elif t in ("list", "map") and isinstance(value, (list, dict)):
        if "min" in meta and len(value) < meta["min"]:
            raise _bad(where, f"must have at least {meta['min']} entries")
        if "max" in meta and len(value) > meta["max"]:
            raise _bad(where, f"must have at most {meta['max']} entries (got {len(value)})")


def check_shape(value, shape, where: str, depth: int = 0) -> None:
    """Raise a 400 if a JSON body value does not have the model's type and rules (recursively)."""
    expected = _JSON_TYPES.get(shape.type_name)
    if value is None or expected is None:
        return
    if depth > 30:
        raise _bad(where, "is nested too deeply")
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise AwsError("InvalidRequestException", f"{where} must be a {shape.type_name}, not {type(value).__name__}")
    check_constraints(value, shape, where)
    if shape.type_name == "structure":
        for key in shape.required_members:
            if value.get(key) is None:
                raise _bad(where, f"is missing its required member {key}")
        for key, member in shape.members.items():
            if key in value:
                check_shape(value[key], member, f"{where}.{key}", depth + 1)
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            check_shape(item, shape.member, f"{where}[{i}]", depth + 1)
    elif shape.type_name == "map":
        for key, item in value.items():
            check_constraints(key, shape.key, f"{where} key")
            check_shape(item, shape.value, f"{where}.{key}", depth + 1)


def running_service(ctx, key: str, what: str):
    """The sandbox service ``ctx.extras[key]`` a handler needs.

    Raises:
        AwsError: 503 ServiceUnavailableException ("the sandbox <what> service is not running").
    """
    service = ctx.extras.get(key)
    if service is None:
        raise AwsError("ServiceUnavailableException", f"the sandbox {what} service is not running", 503)
    return service


def offset_page(items: list, token, size: int) -> tuple[list, str | None]:
    """The ``size`` items from offset ``token`` (a token that is not a number starts at 0).

    Returns:
        (the page, the next page's token or None on the last page).
    """
    text = str(token or "0")
    start = int(text) if text.isdigit() else 0
    return items[start:start + size], (str(start + size) if start + size < len(items) else None)


def list_page(items: list, params: dict, key: str) -> dict:
    """A List* reply with ``maxResults`` (default 100) of ``items`` under ``key``, plus ``nextToken``."""
    page, nxt = offset_page(items, params.get("nextToken"), int(params.get("maxResults") or 100))
    out: dict[str, Any] = {key: page}
    if nxt:
        out["nextToken"] = nxt
    return out


def model_route(service: str, operation: str, handler: Callable) -> tuple[str, str, str, Callable]:
    """A ROUTES entry for ``operation`` of ``service`` from botocore's model.

    The wrapped handler gets ``request.params`` filled with the input members.
    """
    op = service_model(service).operation_model(operation)
    uri = op.http["requestUri"]
    path_part, _, query_part = uri.partition("?")
    static_query = [q.split("=")[0] for q in query_part.split("&") if q and "{" not in q]

    def repl(m: re.Match) -> str:
        name, greedy = m.group(1).rstrip("+"), m.group(1).endswith("+")
        return f"(?P<{re.sub(r'[^0-9A-Za-z_]', '_', name)}>{'.+' if greedy else '[^/]+'})"

    regex = "^" + re.sub(r"\{([^}]+)\}", repl, re.sub(r"([.])", r"\\\1", path_part)) + "$"
    members = op.input_shape.members if op.input_shape else {}
    required = set(op.input_shape.required_members) if op.input_shape else set()

    async def wrapped(ctx, request: Request):
        for key in static_query:
            if key not in request.query:
                raise AwsError("InvalidRequestException", f"missing query parameter {key}")
        params: dict = {}
        body = None
        for name, shape in members.items():
            loc, loc_name = shape.serialization.get("location"), shape.serialization.get("name", name)
            if loc == "uri":
                key = re.sub(r"[^0-9A-Za-z_]", "_", loc_name)
                if key in request.path_params:
                    params[name] = request.path_params[key]
                    check_constraints(params[name], shape, name)
            elif loc == "querystring":
                if loc_name in request.query:
                    params[name] = _convert(request.query[loc_name], shape, loc_name)
                    check_constraints(params[name], shape, loc_name)
            elif loc == "header":
                if loc_name in request.headers:
                    params[name] = request.headers[loc_name]
                    check_constraints(params[name], shape, loc_name)
            elif shape.serialization.get("payload") or name == op.input_shape.serialization.get("payload"):
                params[name] = request.body
            else:
                if body is None:
                    body = request.json()
                if name in body:
                    check_shape(body[name], shape, name)
                    params[name] = body[name]
        missing = sorted(n for n in required if n not in params or params[n] in (None, ""))
        if missing:
            raise AwsError("InvalidRequestException", f"{operation}: missing required parameter(s): {', '.join(missing)}")
        request.params = params
        result = handler(ctx, request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, tuple):
            return result
        return op.http.get("responseCode", 200), result if result is not None else {}

    wrapped.__name__ = f"{operation}_route"
    return service, op.http["method"], regex, wrapped


def model_routes(service: str, operations: dict[str, Callable]) -> list[tuple[str, str, str, Callable]]:
    """A route module's ROUTES for ``service``: operation name -> handler, each by :func:`model_route`."""
    return [model_route(service, name, handler) for name, handler in operations.items()]


class ControlPlane:
    """aiohttp HTTPS server over the ROUTES of the given modules.

    Every request is authenticated here, before any route runs (so every present and future
    route module is covered): SigV4 in the Authorization header, checked with botocore's
    signer against the sandbox's credentials (:mod:`fleetdesk.sandbox.sigv4`), or a SigV4
    presigned query (the job file URLs). Bodies over :data:`MAX_BODY_BYTES` (S3, DynamoDB) or
    :data:`MAX_API_BODY_BYTES` (every other API) are a 413 in AWS's shape.
    """

    def __init__(self, ctx, routes: list[tuple], ssl_context: ssl.SSLContext, host: str, port: int) -> None:
        self.ctx = ctx
        self.routes = [(svc, method.upper(), re.compile(rx), h) for svc, method, rx, h in routes]
        self.ssl_context = ssl_context
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None
        self.auth = SigV4Checker(self._secret_for, ctx.region, self._query_secret_for)

    def _secret_for(self, access_key: str) -> str | None:
        creds = self.ctx.credentials or {}
        if access_key and access_key == creds.get("aws_access_key_id"):
            return creds.get("aws_secret_access_key")
        return None

    def _query_secret_for(self, access_key: str, path: str) -> str | None:
        """The job file store's own key signs presigned GETs of ``/files/...`` only."""
        from fleetdesk.sandbox import files

        if access_key == files.FILES_ACCESS_KEY and path.startswith("/files/"):
            return files.signing_secret(self.ctx.state_dir)
        return None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def _service(self, headers, query=None, method: str = "", path: str = "") -> str:
        """The API a request is for: its SigV4 credential scope, else (unsigned) the first route
        its method and path match (so an unsigned S3 upload is refused in S3's shape)."""
        from fleetdesk.sandbox.sigv4 import scope_service

        name = scope_service(headers, query or {})
        if name:
            return _SIGNING_TO_SERVICE.get(name, name)
        for service, route_method, rx, _ in self.routes:
            if route_method == method and rx.match(path):
                return service
        return "iot"

    async def _handle(self, req):
        from aiohttp import web

        service = "iot"
        try:
            service = self._service(req.headers, req.query, req.method, req.raw_path.partition("?")[0])
            try:
                body = await req.read()
            except web.HTTPRequestEntityTooLarge:
                raise AwsError("RequestEntityTooLargeException",
                               f"The request body is larger than the sandbox accepts ({MAX_BODY_BYTES} bytes)",
                               413) from None
            if service not in LARGE_BODY_SERVICES and len(body) > MAX_API_BODY_BYTES:
                raise AwsError("RequestEntityTooLargeException",
                               f"The request body is {len(body)} bytes; the limit is {MAX_API_BODY_BYTES} bytes", 413)
            raw_path, _, raw_query = req.raw_path.partition("?")
            self.auth.check(req.method, raw_path, raw_query, req.headers, body, service)
            request = Request(req.method, raw_path, dict(req.query), req.headers, body, service)
            status, doc = await self._dispatch(request)
            if isinstance(doc, (bytes, bytearray)):
                return web.Response(status=status, body=bytes(doc), content_type="application/octet-stream")
            return web.Response(status=status, text=json.dumps(doc, allow_nan=False), content_type="application/json")
        except AwsError as exc:
            return self._error(exc, service)
        except RecursionError:
            return self._error(AwsError("InvalidRequestException", "The request is nested too deeply"), service)
        except Exception as exc:  # a bug must answer 500, not hang the client
            log.exception("control plane: %s %s failed", req.method, req.path)
            return self._error(AwsError("InternalFailureException", f"internal error: {exc!r}", 500), service)

    async def _dispatch(self, request: Request):
        path_matched = False
        for service, method, rx, handler in self.routes:
            m = rx.match(request.path)
            if not m:
                continue
            path_matched = True
            if method != request.method or service != request.service:
                continue
            request.path_params = {k: unquote(v) for k, v in m.groupdict().items()}
            result = handler(self.ctx, request)
            if inspect.isawaitable(result):
                result = await result
            return result
        if path_matched:
            raise AwsError("MethodNotAllowedException", f"{request.method} is not supported on {request.path}", 405)
        raise AwsError("ResourceNotFoundException",
                       f"the sandbox does not implement {request.service} {request.method} {request.path}", 404)

    @staticmethod
    def _error(exc: AwsError, service: str = "iot"):
        from aiohttp import web
        from xml.sax.saxutils import escape

        if service == "s3":  # S3's REST-XML error shape (botocore's s3 parser reads Code/Message)
            text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(exc.code)}</Code>'
                    f"<Message>{escape(exc.message)}</Message></Error>")
            return web.Response(status=exc.status, text=text, content_type="application/xml")
        return web.Response(status=exc.status, text=json.dumps({"message": exc.message}),
                            content_type="application/json", headers={"x-amzn-ErrorType": exc.code})
