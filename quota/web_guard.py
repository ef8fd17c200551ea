"""What reaches the routes and what leaves the service: the web guard around the app.

- :class:`SecurityHeaders` puts the security headers on every answer (also 404s, 413s and
  refusals): a Content-Security-Policy that allows nothing from anywhere (the service serves
  JSON, CSV and script-free HTML), no framing, no referrer, no MIME sniffing, no caching.
- :class:`RequestGuard` refuses, before any route runs, a body over ``max_body_bytes``
  (413, naming the limit; also without a Content-Length), an address over
  :data:`MAX_URL_CHARS` (414), and JSON that only Python's parser accepts: NaN, Infinity,
  numbers too large for a double (1e309) or with more than :data:`MAX_INT_DIGITS` digits,
  and lone surrogates (``"\\ud800"``, half of a UTF-16 pair, not a character) — 422 in
  FastAPI's shape, naming the field.
- :func:`validation_error` answers FastAPI's validation errors without echoing large
  inputs: each ``input`` is cut to :data:`ECHO_CHARS` characters with its length named.

See docs/security.md ("Quota service web hardening").
"""

from __future__ import annotations

import email.message
import json
import math

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

MAX_URL_CHARS = 8192
MAX_INT_DIGITS = 15  # JavaScript's safe integers; no field of the API needs more
ECHO_CHARS = 100
MAX_ERRORS = 20

CONTENT_SECURITY_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware: the headers above on every HTTP answer, and ``Cache-Control:
    no-store`` unless the route set its own (answers hold personal data)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(name, value) for name, value in HEADERS if name not in names]
                if b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message = dict(message, headers=[*message.get("headers", []), *extra])
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestGuard:
    """ASGI middleware: size of the address and the body, and strict JSON (see the module)."""

    def __init__(self, app, max_body_bytes: int, uploads: dict[str, int] | None = None):
        """``uploads``: path suffix -> the larger body a form there may send (a roster's CSV)."""
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.uploads = dict(uploads or {})

    def _limit(self, scope) -> int:
        path = scope.get("path", "")
        return max([self.max_body_bytes, *(most for suffix, most in self.uploads.items() if path.endswith(suffix))])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        url_chars = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b""))
        if url_chars > MAX_URL_CHARS:
            return await _answer(send, 414, f"The address is {url_chars} characters long; this service reads at most "
                                            f"{MAX_URL_CHARS}. Send long values in a request body instead.")
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        declared = headers.get(b"content-length", b"").strip()
        limit = self._limit(scope)
        if declared.isdigit() and int(declared) > limit:
            return await _answer(send, 413, self._too_large(limit))
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                return await _answer(send, 413, self._too_large(limit))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and _is_json(headers.get(b"content-type", b"").decode("latin-1")):
            errors = json_problems(body)
            if errors:
                return await _answer(send, 422, errors)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, limit: int) -> str:
        return (f"The request body is larger than {limit} bytes ({limit // 1024} KB), the "
                "most this service reads (setting max_body_bytes). Lease requests and changes take a few hundred "
                "bytes: send only the fields the API describes.")


def _is_json(content_type: str) -> bool:
    """Whether FastAPI reads this body as JSON (no type, application/json or application/*+json)."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class _NotANumber:
    def __init__(self, text: str, why: str):
        self.text, self.why = text, why


def _float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _NotANumber(text, "is too large for a number (more than about 1.8e308)")


def _int(text: str):
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _NotANumber(f"{text[:20]}…", f"has more than {MAX_INT_DIGITS} digits")
    return int(text)


def json_problems(body: bytes) -> list[dict]:
    """What in this JSON body only a lax parser would accept, as FastAPI's error list
    (empty when nothing; also empty when it is not JSON at all, which FastAPI answers)."""
    try:
        value = json.loads(body, parse_float=_float, parse_int=_int,
                           parse_constant=lambda text: _NotANumber(text, "is not a JSON number"))
    except ValueError:
        return []
    problems: list[dict] = []
    _walk(value, ("body",), problems)
    return problems[:MAX_ERRORS]


def _walk(value, loc: tuple, problems: list[dict]) -> None:
    if len(problems) >= MAX_ERRORS:
        return
    if isinstance(value, _NotANumber):
        problems.append({"type": "finite_number", "loc": list(loc), "input": value.text,
                         "msg": f"{value.text} {value.why}: send a finite number within the field's range "
                                "(NaN and Infinity are not JSON)."})
    elif isinstance(value, str):
        if _has_surrogate(value):
            problems.append({"type": "string_unicode", "loc": list(loc), "input": compact(value),
                             "msg": "The text holds a lone surrogate (half of a UTF-16 pair, such as \\ud800), which "
                                    "is not a character: send UTF-8 text."})
    elif isinstance(value, dict):
        for key, item in value.items():
            if _has_surrogate(key):
                problems.append({"type": "string_unicode", "loc": list(loc), "input": compact(key),
                                 "msg": "A field name holds a lone surrogate (half of a UTF-16 pair), which is not a "
                                        "character: send UTF-8 text."})
            _walk(item, (*loc, compact(key)), problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _walk(item, (*loc, index), problems)


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def compact(value, limit: int = ECHO_CHARS):
    """A short, JSON-safe stand-in for an input echoed in an error: numbers and short
    text as they are, anything longer cut with its length named, surrogates escaped."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) < 10 ** MAX_INT_DIGITS else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        text, length = value, len(value)
    else:
        try:
            text = json.dumps(jsonable_encoder(value), default=str, ensure_ascii=False)
        except ValueError:  # an integer too long to print
            text = f"a {type(value).__name__} value"
        length = len(text)
    text = text[: limit + 1].encode("utf-8", "backslashreplace").decode("utf-8")
    return text if length <= limit else f"{text[:limit]}… ({length} characters in all)"


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 with every ``input`` and ``ctx`` value cut short and made JSON-safe."""
    errors = []
    for error in exc.errors()[:MAX_ERRORS]:
        item = {"type": error.get("type"), "loc": [compact(part) for part in error.get("loc", ())],
                "msg": compact(str(error.get("msg", "")), 500)}
        if "input" in error:
            item["input"] = compact(error["input"])
        if error.get("ctx"):
            item["ctx"] = {name: compact(value if isinstance(value, (int, float, str)) else str(value))
                           for name, value in error["ctx"].items()}
        errors.append(item)
    return JSONResponse({"detail": errors}, status_code=422)


async def _answer(send, status: int, detail) -> None:
    body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
