"""The forwarded idempotency key: the value of the ``Idempotency-Key``
header the host adds to an ``idempotent`` or ``side-effecting`` tool's
mutating requests (design.md, "Exactly-once past the sandbox wall").

The same derivation as the host's (``guest-sdk/rust/src/forwarded.rs``):
32 hex characters of blake3 in derive-key mode over four length-prefixed
parts: the call's key (hex), the method in upper case, the scheme and
authority in lower case, and the path (``/`` when empty, never the query).
A test builds a Python tool that returns this value and compares it with
the header the host really sent.
"""

from . import _blake3

CONTEXT = "toolhost idempotency-key header v1"
_MUTATING = ("POST", "PUT", "PATCH", "DELETE")
_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _upper(text: str) -> str:
    """ASCII upper case only, as the host's ``to_ascii_uppercase``."""
    return text.translate(_UPPER)


def _lower(text: str) -> str:
    return text.translate(_LOWER)


def is_mutating(method: str) -> bool:
    """Whether requests of ``method`` carry the key."""
    return _upper(method) in _MUTATING


def split_url(url: str):
    """An absolute http(s) URL's origin (``scheme://authority`` without
    user info) and path (without query or fragment), or ``None``."""
    scheme, sep, rest = url.partition("://")
    if not sep or _lower(scheme) not in ("http", "https"):
        return None
    end = len(rest)
    for mark in "/?#":
        at = rest.find(mark)
        if at != -1:
            end = min(end, at)
    authority = rest[:end].rpartition("@")[2]
    if not authority:
        return None
    tail = rest[end:]
    path_end = len(tail)
    for mark in "?#":
        at = tail.find(mark)
        if at != -1:
            path_end = min(path_end, at)
    return f"{scheme}://{authority}", tail[:path_end]


def derive(call_key: str, method: str, origin: str, path: str) -> str:
    """The header value for a ``method`` request to ``origin`` + ``path``
    within the call whose key is ``call_key``."""
    material = bytearray()
    for part in (call_key, _upper(method), _lower(origin), path or "/"):
        encoded = part.encode("utf-8")
        material += len(encoded).to_bytes(8, "little")
        material += encoded
    return _blake3.derive_key(CONTEXT, bytes(material)).hex()[:32]
