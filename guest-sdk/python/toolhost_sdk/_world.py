"""The componentize-py glue: a ``WitWorld`` class over the generated
bindings. The bindings (``wit_world``, ``componentize_py_types``) exist
only inside a component, where componentize-py generates them, so they are
imported when a method runs: the tool's module still imports natively, for
its unit tests."""

from . import Context, InvalidInput, Failed, Transient, ToolError
from . import invoke, invoke_reconcile


def _wit_error(types, e: ToolError):
    message = str(e)
    if isinstance(e, InvalidInput):
        return types.ToolError_InvalidInput(message)
    if isinstance(e, Transient):
        return types.ToolError_Transient(message)
    return types.ToolError_Failed(message)


def _effect(types, effect: str):
    return {
        "pure": types.Effect.PURE,
        "read-only": types.Effect.READ_ONLY,
        "idempotent": types.Effect.IDEMPOTENT,
        "side-effecting": types.Effect.SIDE_EFFECTING,
    }[effect]


def _bindings():
    from componentize_py_types import Err

    try:
        from wit_world.imports import types
    except ImportError:
        # Beside wasi:http's own `types` (the http-tool worlds), the
        # bindings name ours by its package.
        from wit_world.imports import toolhost_tool_types as types
    return Err, types


def make(declared):
    def context(ctx):
        return Context(idempotency_key=ctx.idempotency_key, attempt=ctx.attempt,
                       deadline_ms=ctx.deadline_ms)

    class WitWorld:
        def describe(self):
            _, types = _bindings()
            return types.Metadata(
                name=declared.name,
                description=declared.description,
                version=declared.version,
                input_schema=declared.input_schema(),
                output_schema=declared.output_schema(),
                effect=_effect(types, declared.effect),
            )

        def call(self, ctx, input):
            Err, types = _bindings()
            try:
                return invoke(declared, input, context(ctx))
            except ToolError as e:
                raise Err(_wit_error(types, e)) from None

        def reconcile(self, ctx, input):
            Err, types = _bindings()
            try:
                answer, value = invoke_reconcile(declared, input, context(ctx))
            except ToolError as e:
                raise Err(_wit_error(types, e)) from None
            if answer == "committed":
                return types.Reconciliation_Committed(value)
            if answer == "not-done":
                return types.Reconciliation_NotDone()
            return types.Reconciliation_Unknown(value)

    if declared.reconcile is None:
        del WitWorld.reconcile
    return WitWorld
