"""HTTP from a Python tool, over wasi:http: the host sends the request, to
granted hosts only (``allow_hosts`` in the tool's policy), and adds the
forwarded ``Idempotency-Key`` to an idempotent or side-effecting tool's
mutating requests.

The standard library's ``urllib`` has no sockets in WASI, so this is a
small synchronous client over the wasi:http bindings componentize-py
generates for the ``http-tool`` and ``reconciling-http-tool`` worlds (set
``world`` under ``[tool.toolhost]`` in ``pyproject.toml``)::

    from toolhost_sdk import http
    r = http.request("POST", "https://api.example.com/v1/charges",
                     headers={"content-type": "application/json"},
                     body=json.dumps(charge).encode())
    if r.status >= 500:
        raise toolhost.Transient(f"the API answered {r.status}")
    data = r.json()

A refused host is ``capability_denied`` (the host records the refusal
itself, so a tool cannot hide it); a failed connection is ``Transient``.
"""

import json as _json
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Imported when the module is, not on first use: componentize-py snapshots
# the interpreter after the tool's module is imported, and a module first
# imported during a call is not in the component. Natively (unit tests) and
# in the plain `tool` world they do not exist.
try:
    from componentize_py_types import Err as _Err
    from wit_world.imports import outgoing_handler as _handler
    from wit_world.imports import streams as _streams
    from wit_world.imports import wasi_http_types as _types
except ImportError as _missing:
    _handler = None
    _why = str(_missing)

# Bytes per write: wasi:io's blocking-write-and-flush takes at most 4096.
_WRITE = 4096
_READ = 64 * 1024


@dataclass
class Response:
    status: int
    headers: list = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str):
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self):
        return _json.loads(self.body)


def _bindings():
    if _handler is None:
        raise RuntimeError(
            "toolhost_sdk.http needs the http-tool world: set world = \"http-tool\" "
            f"(or \"reconciling-http-tool\") under [tool.toolhost] in pyproject.toml ({_why})"
        )
    return _handler, _streams, _types


def _method(t, method: str):
    known = {
        "GET": t.Method_Get, "HEAD": t.Method_Head, "POST": t.Method_Post,
        "PUT": t.Method_Put, "DELETE": t.Method_Delete, "CONNECT": t.Method_Connect,
        "OPTIONS": t.Method_Options, "TRACE": t.Method_Trace, "PATCH": t.Method_Patch,
    }
    upper = method.upper()
    return known[upper]() if upper in known else t.Method_Other(method)


def _error(code) -> Exception:
    """A wasi:http error code as the SDK's error kinds."""
    from . import CapabilityDenied, Failed, Transient

    name = type(code).__name__.removeprefix("ErrorCode_")
    if name == "HttpRequestDenied":
        return CapabilityDenied("the host refused the request: grant it in allow_hosts")
    detail = getattr(code, "value", None)
    text = f"{name}: {detail}" if detail is not None else name
    if name.startswith(("Dns", "Destination", "Connection", "Tls")) or name.endswith("Timeout"):
        return Transient(text)
    return Failed(text)


def request(method: str, url: str, headers=None, body: bytes = None,
            timeout_ms: int = None) -> Response:
    """Sends one request and reads the whole response."""
    outgoing_handler, streams, t = _bindings()
    Err = _Err
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL")
    items = list(headers.items() if isinstance(headers, dict) else (headers or []))
    # A length, unless the caller chose one: servers that do not read a
    # chunked body (many small ones) would see it empty.
    if body and not any(k.lower() == "content-length" for k, _ in items):
        items.append(("content-length", str(len(body))))
    fields = t.Fields.from_list([(k, v.encode() if isinstance(v, str) else v) for k, v in items])
    req = t.OutgoingRequest(fields)
    req.set_method(_method(t, method))
    req.set_scheme(t.Scheme_Https() if parts.scheme == "https" else t.Scheme_Http())
    req.set_authority(parts.netloc.rpartition("@")[2])
    path = parts.path or "/"
    req.set_path_with_query(f"{path}?{parts.query}" if parts.query else path)
    outgoing = req.body()
    options = None
    if timeout_ms is not None:
        options = t.RequestOptions()
        nanos = int(timeout_ms) * 1_000_000
        options.set_connect_timeout(nanos)
        options.set_first_byte_timeout(nanos)
        options.set_between_bytes_timeout(nanos)
    try:
        future = outgoing_handler.handle(req, options)
    except Err as e:
        raise _error(e.value) from None
    if body:
        with outgoing.write() as stream:
            for at in range(0, len(body), _WRITE):
                stream.blocking_write_and_flush(body[at:at + _WRITE])
    t.OutgoingBody.finish(outgoing, None)
    with future:
        with future.subscribe() as ready:
            ready.block()
        answer = future.get()
    # Some(Ok(Ok(response))) | Some(Ok(Err(code))) | Some(Err(())).
    if answer is None or isinstance(answer, Err):
        raise _error(t.ErrorCode_InternalError("no response"))
    inner = answer.value
    if isinstance(inner, Err):
        raise _error(inner.value)
    with inner.value as response:
        status = response.status()
        with response.headers() as h:
            got = [(k, v.decode("latin-1")) for k, v in h.entries()]
        incoming = response.consume()
        data = bytearray()
        with incoming.stream() as stream:
            while True:
                try:
                    data += stream.blocking_read(_READ)
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise _error(t.ErrorCode_HttpResponseIncomplete()) from None
        t.IncomingBody.finish(incoming)
    return Response(status=status, headers=got, body=bytes(data))
