"""toolhost-sdk for Python: write a sandboxed tool as one function.

A toolhost tool is a WebAssembly component that exports the
``toolhost:tool/tool@0.2.0`` world (``reconciling-tool@0.2.0`` when it can
tell whether a call in doubt took effect). componentize-py builds it from
a module that defines the class ``WitWorld``; this package writes that
class for you from one decorated function::

    from dataclasses import dataclass
    import toolhost_sdk as toolhost

    @dataclass
    class Input:
        name: str

    @dataclass
    class Output:
        greeting: str

    @toolhost.tool(description="Greets someone.", effect=toolhost.PURE)
    def greet(ctx: toolhost.Context, input: Input) -> Output:
        return Output(greeting=f"Hello, {input.name}!")

    WitWorld = toolhost.world(greet)

- ``describe`` reports the name, description, version, effect and the JSON
  Schemas of the input and output, derived from the function's annotations
  (dataclasses or TypedDicts; see ``toolhost_sdk.schema``);
- ``call`` parses the input into the input type (a mismatch is
  ``invalid_input`` naming the path), runs the function and serialises
  what it returns;
- the exceptions ``InvalidInput``, ``Failed`` and ``Transient`` become the
  host's error kinds; any other exception is ``tool_failed`` with its type
  and message (never a trap), so a bug shows the model what went wrong;
  ``MemoryError`` alone traps, so the host reports ``memory_limit``;
- ``reconcile=`` on ``tool`` answers, for a call whose process died before
  its outcome was recorded, whether its effect happened.

Nothing outside the sandbox is reachable unless the tool's policy grants
it: files through ``open`` in granted directories (an access outside them
is ``capability_denied``), HTTP through ``toolhost_sdk.http`` to granted
hosts.
"""

import dataclasses
import json
import os
import typing

from . import forwarded, schema

__all__ = [
    "PURE", "READ_ONLY", "IDEMPOTENT", "SIDE_EFFECTING",
    "Context", "InvalidInput", "Failed", "Transient", "CapabilityDenied",
    "Committed", "NOT_DONE", "Unknown",
    "tool", "world", "invoke", "invoke_reconcile", "Tool",
]

PURE = "pure"
READ_ONLY = "read-only"
IDEMPOTENT = "idempotent"
SIDE_EFFECTING = "side-effecting"
_EFFECTS = (PURE, READ_ONLY, IDEMPOTENT, SIDE_EFFECTING)

#: The prefix of a ``Failed`` message the host reports as
#: ``capability_denied`` (the WIT world has no case of its own for it).
CAPABILITY_DENIED_PREFIX = "capability_denied: "

#: WASI's ENOTCAPABLE: a path outside every granted directory.
_ENOTCAPABLE = 76


class ToolError(Exception):
    """Base of the errors a tool raises on purpose."""


class InvalidInput(ToolError):
    """The caller's fault: not retried, shown to the model."""


class Failed(ToolError):
    """Ran and failed: not retried."""


class Transient(ToolError):
    """Worth retrying later (a remote service is busy)."""


class CapabilityDenied(Failed):
    """The sandbox refused an access (a file outside every grant)."""

    def __init__(self, what):
        super().__init__(f"{CAPABILITY_DENIED_PREFIX}{what}")


@dataclasses.dataclass(frozen=True)
class Context:
    """What the host tells a call about itself."""

    #: Hex; the same on every attempt of this call's key.
    idempotency_key: str
    #: 1 on the first execution of this key.
    attempt: int
    #: Wall-clock budget left for this call, in milliseconds.
    deadline_ms: int

    def forwarded_key(self, method: str, url: str):
        """The ``Idempotency-Key`` value the host adds to a ``method``
        request to ``url`` in this call (idempotent and side-effecting
        tools, POST/PUT/PATCH/DELETE, unless the tool set the header); None
        for a method that carries none or a URL that is not absolute
        http(s). ``reconcile`` looks its effect up by it."""
        if not forwarded.is_mutating(method):
            return None
        parts = forwarded.split_url(url)
        if parts is None:
            return None
        origin, path = parts
        return forwarded.derive(self.idempotency_key, method, origin, path)

    @classmethod
    def for_tests(cls):
        """A context for unit tests run natively: a fixed key, attempt 1, 10 s."""
        return cls(idempotency_key="00" * 32, attempt=1, deadline_ms=10_000)


@dataclasses.dataclass(frozen=True)
class Committed:
    """reconcile's answer: the effect happened; ``output`` is what ``call``
    would have returned."""

    output: typing.Any


class _NotDone:
    def __repr__(self):
        return "NOT_DONE"


#: reconcile's answer: the effect did not happen; the host runs call again.
NOT_DONE = _NotDone()


@dataclasses.dataclass(frozen=True)
class Unknown:
    """reconcile's answer: the remote cannot tell (yet); ``reason`` says why."""

    reason: str


@dataclasses.dataclass
class Tool:
    """A declared tool: what ``describe`` reports and the functions."""

    name: str
    description: str
    version: str
    effect: str
    input_type: typing.Any
    output_type: typing.Any
    run: typing.Callable
    reconcile: typing.Optional[typing.Callable] = None

    def input_schema(self) -> str:
        return json.dumps(schema.root_schema(self.input_type), separators=(",", ":"))

    def output_schema(self):
        if self.output_type is None:
            return None
        return json.dumps(schema.root_schema(self.output_type), separators=(",", ":"))

    def __call__(self, ctx, input):
        return self.run(ctx, input)


def tool(name=None, *, description, effect, version="0.1.0", reconcile=None):
    """Declares a tool from ``def f(ctx: Context, input: In) -> Out``.

    ``name`` defaults to the function's name; ``effect`` is one of PURE,
    READ_ONLY, IDEMPOTENT, SIDE_EFFECTING; ``reconcile``, when given, is
    ``def r(ctx, input: In) -> Committed | NOT_DONE | Unknown``. The schemas
    are derived here, so a type the SDK cannot describe fails the build.
    """
    if effect not in _EFFECTS:
        raise ValueError(f"effect {effect!r} is not one of {', '.join(_EFFECTS)}")

    def declare(run):
        hints = typing.get_type_hints(run, include_extras=True)
        params = [p for p in hints if p != "return"]
        if len(params) != 2:
            raise TypeError(
                f"{run.__name__} must be annotated as (ctx: Context, input: In) -> Out"
            )
        declared = Tool(
            name=name or run.__name__,
            description=description,
            version=version,
            effect=effect,
            input_type=hints[params[1]],
            output_type=hints.get("return"),
            run=run,
            reconcile=reconcile,
        )
        declared.input_schema()
        declared.output_schema()
        return declared

    return declare


def _parse(declared: Tool, input: str):
    try:
        value = json.loads(input)
    except ValueError as e:
        raise InvalidInput(f"input is not JSON: {e}") from None
    try:
        return schema.decode(declared.input_type, value)
    except schema.DecodeError as e:
        raise InvalidInput(str(e)) from None


def _serialise(value) -> str:
    return json.dumps(schema.encode(value), ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False)


def _outside_every_grant(e: OSError) -> bool:
    """WASI resolves paths against the granted (preopened) directories in
    the guest, so a path outside all of them fails as a plain "not found"
    that never reached the host. The difference is in the ancestors: inside
    a grant some ancestor directory is reachable, outside every grant none
    is (the Rust SDK's ``io_error`` makes the same call)."""
    path = getattr(e, "filename", None)
    if not isinstance(e, FileNotFoundError) or not isinstance(path, str):
        return False
    if not path.startswith("/"):
        return False
    parent = os.path.dirname(path.rstrip("/"))
    while True:
        if os.path.isdir(parent):
            return False
        if parent == "/":
            return True
        parent = os.path.dirname(parent)


def _failure(e: BaseException) -> ToolError:
    """Any exception as one of the three kinds the host knows."""
    if isinstance(e, ToolError):
        return e
    if isinstance(e, PermissionError) or getattr(e, "errno", None) == _ENOTCAPABLE:
        return CapabilityDenied(e)
    if isinstance(e, OSError) and _outside_every_grant(e):
        return CapabilityDenied(f"{e.filename} is outside every directory this tool was granted")
    return Failed(f"{type(e).__name__}: {e}")


def invoke(declared: Tool, input: str, ctx: Context = None) -> str:
    """Runs the whole call path natively (parse, run, serialise), raising
    the tool's error; for unit tests."""
    ctx = ctx or Context.for_tests()
    try:
        return _serialise(declared.run(ctx, _parse(declared, input)))
    except MemoryError:
        # Out of memory is the sandbox's limit, not the tool's failure: let
        # it trap, so the host (whose limiter refused the growth) reports
        # `memory_limit`.
        raise
    except (Exception, SystemExit) as e:  # every other failure becomes a kind
        raise _failure(e) from e


def invoke_reconcile(declared: Tool, input: str, ctx: Context = None):
    """Runs ``reconcile`` natively: ``("committed", output_json)``,
    ``("not-done", None)`` or ``("unknown", reason)``."""
    if declared.reconcile is None:
        raise TypeError(f"{declared.name} has no reconcile")
    ctx = ctx or Context.for_tests()
    try:
        answer = declared.reconcile(ctx, _parse(declared, input))
        if isinstance(answer, Committed):
            return "committed", _serialise(answer.output)
        if answer is NOT_DONE:
            return "not-done", None
        if isinstance(answer, Unknown):
            return "unknown", answer.reason
        raise TypeError(
            f"reconcile returned {answer!r}; return Committed(output), NOT_DONE or Unknown(reason)"
        )
    except MemoryError:
        raise
    except (Exception, SystemExit) as e:
        raise _failure(e) from e


def world(declared: Tool):
    """The ``WitWorld`` class componentize-py builds the component from.
    Build with ``-w reconciling-tool`` when the tool has ``reconcile``,
    else ``-w tool`` (``toolhost tools build`` picks the world for you)."""
    from ._world import make

    return make(declared)
