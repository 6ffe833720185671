"""JSON Schemas (2020-12) derived from Python types, and JSON values read
back into those types.

A tool declares its input and output as dataclasses or TypedDicts; this
module turns them into the schemas ``describe`` publishes, kept to what the
Rust SDK publishes: standard keywords only, every property typed (a field
of ``Any`` lists every JSON type), a class docstring as the object's
``description``, ``Annotated[T, "text"]`` as a property's ``description``.

Objects are closed (``additionalProperties: false``; an unknown member is
an error naming it), as the Rust examples' ``deny_unknown_fields``: a
misspelt optional field is a model's mistake the tool should report, not
ignore.

``decode`` reads a parsed JSON value into the declared type and names the
path of the first mismatch (``items[2].price: expected a number, got a
string``), as the Rust SDK names serde's path.
"""

import dataclasses
import enum
import sys
import types
import typing

ANY_TYPE = ["null", "boolean", "object", "array", "number", "string"]

_NoneType = type(None)


class SchemaError(TypeError):
    """A type the SDK cannot describe as JSON (raised when the tool is
    declared, so a build fails rather than a call)."""


class DecodeError(ValueError):
    """A JSON value that does not fit the declared type; ``path`` says where."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def _is_typed_dict(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__total__")


def _origin(tp):
    return typing.get_origin(tp)


def _union_args(tp):
    """The members of ``Union[...]`` / ``X | Y``, or None."""
    origin = _origin(tp)
    if origin is typing.Union or (sys.version_info >= (3, 10) and origin is types.UnionType):
        return typing.get_args(tp)
    return None


def _hints(cls):
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except NameError as e:
        raise SchemaError(f"{cls.__name__}: a field's type {e}; define it at module level") from None


def _describe(cls) -> str:
    doc = cls.__doc__ or ""
    # A dataclass without a docstring gets a generated signature as its doc.
    if dataclasses.is_dataclass(cls) and doc.startswith(cls.__name__ + "("):
        return ""
    return " ".join(doc.split())


def schema_for(tp, _seen=()) -> dict:
    """The JSON Schema of ``tp`` (a subschema: no ``$schema``)."""
    if typing.get_origin(tp) is typing.Annotated:
        base, *extras = typing.get_args(tp)
        schema = schema_for(base, _seen)
        notes = [e for e in extras if isinstance(e, str)]
        if notes:
            schema = dict(schema, description=" ".join(notes))
        return schema
    if tp is typing.Any or tp is object:
        return {"type": list(ANY_TYPE)}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is _NoneType or tp is None:
        return {"type": "null"}
    members = _union_args(tp)
    if members is not None:
        return {"anyOf": [schema_for(m, _seen) for m in members]}
    origin = _origin(tp)
    if origin is typing.Literal:
        values = list(typing.get_args(tp))
        return {"enum": values}
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            args = args[:1]
        if origin is tuple and len(args) > 1:
            items = [schema_for(a, _seen) for a in args]
            return {"type": "array", "prefixItems": items, "items": False,
                    "minItems": len(items)}
        item = schema_for(args[0], _seen) if args else {"type": list(ANY_TYPE)}
        schema = {"type": "array", "items": item}
        if origin in (set, frozenset):
            schema["uniqueItems"] = True
        return schema
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        if args and args[0] is not str:
            raise SchemaError(f"{tp}: JSON object keys are strings; use dict[str, ...]")
        value = schema_for(args[1], _seen) if args else {"type": list(ANY_TYPE)}
        return {"type": "object", "additionalProperties": value}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if dataclasses.is_dataclass(tp) or _is_typed_dict(tp):
        if tp in _seen:
            raise SchemaError(f"{tp.__name__} refers to itself; recursive types are not supported")
        return _object_schema(tp, _seen + (tp,))
    raise SchemaError(
        f"{tp!r} has no JSON Schema: use str, int, float, bool, None, list, dict[str, T], "
        "Optional, Literal, an Enum, a dataclass or a TypedDict"
    )


def _object_schema(cls, seen) -> dict:
    hints = _hints(cls)
    properties = {}
    required = []
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            prop = schema_for(hints[field.name], seen)
            note = field.metadata.get("description") if field.metadata else None
            if note:
                prop = dict(prop, description=note)
            properties[field.name] = prop
            no_default = (field.default is dataclasses.MISSING
                          and field.default_factory is dataclasses.MISSING)
            if no_default:
                required.append(field.name)
    else:
        required_keys = getattr(cls, "__required_keys__", frozenset(hints))
        for name, hint in hints.items():
            if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
                hint = typing.get_args(hint)[0]
            properties[name] = schema_for(hint, seen)
            if name in required_keys:
                required.append(name)
    schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    description = _describe(cls)
    if description:
        schema["description"] = description
    return schema


def root_schema(tp) -> dict:
    """``schema_for(tp)`` with the 2020-12 ``$schema`` and a ``title``."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if isinstance(tp, type):
        schema["title"] = tp.__name__
    schema.update(schema_for(tp))
    return schema


_JSON_NAMES = {str: "a string", bool: "a boolean", int: "an integer", float: "a number",
               list: "an array", dict: "an object", _NoneType: "null"}


def _kind(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _at(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def decode(tp, value, path: str = ""):
    """``value`` (parsed JSON) as an instance of ``tp``; DecodeError names
    the first mismatch."""
    if typing.get_origin(tp) is typing.Annotated:
        return decode(typing.get_args(tp)[0], value, path)
    if tp is typing.Any or tp is object:
        return value
    if tp is _NoneType or tp is None:
        if value is not None:
            raise DecodeError(path, f"expected null, got {_kind(value)}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise DecodeError(path, f"expected a boolean, got {_kind(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise DecodeError(path, f"expected an integer, got {_kind(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DecodeError(path, f"expected a number, got {_kind(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise DecodeError(path, f"expected a string, got {_kind(value)}")
        return value
    members = _union_args(tp)
    if members is not None:
        errors = []
        for member in members:
            try:
                return decode(member, value, path)
            except DecodeError as e:
                errors.append(str(e))
        raise DecodeError(path, "matches none of: " + "; ".join(errors))
    origin = _origin(tp)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise DecodeError(path, f"expected one of {list(allowed)!r}, got {value!r}")
        return value
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple):
        if not isinstance(value, list):
            raise DecodeError(path, f"expected an array, got {_kind(value)}")
        args = typing.get_args(tp)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis) and args:
            if len(value) != len(args):
                raise DecodeError(path, f"expected {len(args)} items, got {len(value)}")
            return tuple(decode(a, v, _at(path, i)) for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else typing.Any
        items = [decode(item, v, _at(path, i)) for i, v in enumerate(value)]
        if origin is tuple:
            return tuple(items)
        if origin in (set, frozenset):
            return origin(items)
        return items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise DecodeError(path, f"expected an object, got {_kind(value)}")
        args = typing.get_args(tp)
        item = args[1] if args else typing.Any
        return {k: decode(item, v, _at(path, k)) for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise DecodeError(path, f"expected one of {allowed!r}, got {value!r}") from None
    if dataclasses.is_dataclass(tp) or _is_typed_dict(tp):
        if not isinstance(value, dict):
            raise DecodeError(path, f"expected an object, got {_kind(value)}")
        hints = _hints(tp)
        unknown = [k for k in value if k not in hints]
        if unknown:
            known = ", ".join(hints) or "none"
            raise DecodeError(_at(path, unknown[0]), f"unknown field (known: {known})")
        if dataclasses.is_dataclass(tp):
            fields = {f.name: f for f in dataclasses.fields(tp)}
            kwargs = {}
            for name, field in fields.items():
                if name in value:
                    kwargs[name] = decode(hints[name], value[name], _at(path, name))
                elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                    raise DecodeError(_at(path, name), "missing field")
            return tp(**kwargs)
        required_keys = getattr(tp, "__required_keys__", frozenset(hints))
        out = {}
        for name, hint in hints.items():
            if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
                hint = typing.get_args(hint)[0]
            if name in value:
                out[name] = decode(hint, value[name], _at(path, name))
            elif name in required_keys:
                raise DecodeError(_at(path, name), "missing field")
        return out
    raise DecodeError(path, f"cannot read a value of type {tp!r}")


def encode(value):
    """A tool's output (dataclasses, enums, tuples and sets included) as
    plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return encode(value.value)
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [encode(v) for v in sorted(value, key=repr)]
    return value
