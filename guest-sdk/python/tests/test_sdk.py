"""Unit tests of the Python SDK, run natively (``python3 -m unittest``
from ``guest-sdk/python``; the Rust suite runs them in
``tests/all/lang/python.rs``)."""

import dataclasses
import os
import enum
import json
import typing
import unittest

import toolhost_sdk as toolhost
from toolhost_sdk import _blake3, forwarded, schema


@dataclasses.dataclass
class Item:
    """One line of an order."""

    sku: str
    price: float
    tags: list[str] = dataclasses.field(default_factory=list)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclasses.dataclass
class Order:
    items: list[Item]
    colour: Colour
    note: typing.Optional[str] = None
    count: typing.Annotated[int, "How many."] = 1
    extra: typing.Any = None


class Point(typing.TypedDict):
    x: int
    y: typing.NotRequired[int]


@dataclasses.dataclass
class Node:
    child: typing.Optional["Node"]


@dataclasses.dataclass
class Total:
    total: float


@toolhost.tool(description="Adds an order up.", effect=toolhost.PURE)
def total(ctx: toolhost.Context, input: Order) -> Total:
    if not input.items:
        raise toolhost.InvalidInput("an order needs items")
    if input.note == "busy":
        raise toolhost.Transient("try later")
    if input.note == "bug":
        return {}["missing"]
    return Total(total=sum(i.price for i in input.items) * input.count)


class SchemaTests(unittest.TestCase):
    def test_a_dataclass_becomes_a_typed_object_with_its_required_fields(self):
        s = schema.root_schema(Order)
        self.assertEqual(s["$schema"], "https://json-schema.org/draft/2020-12/schema")
        self.assertEqual(s["type"], "object")
        self.assertEqual(s["required"], ["items", "colour"])
        item = s["properties"]["items"]["items"]
        self.assertEqual(item["properties"]["price"], {"type": "number"})
        self.assertEqual(item["description"], "One line of an order.")
        self.assertEqual(s["properties"]["colour"], {"enum": ["red", "blue"]})
        self.assertEqual(s["properties"]["note"], {"anyOf": [{"type": "string"}, {"type": "null"}]})
        self.assertEqual(s["properties"]["count"], {"type": "integer", "description": "How many."})
        self.assertEqual(s["properties"]["extra"], {"type": schema.ANY_TYPE})

    def test_every_property_has_a_type_or_an_equivalent(self):
        def walk(node):
            if isinstance(node, dict):
                for prop in node.get("properties", {}).values():
                    self.assertTrue(
                        any(k in prop for k in ("type", "enum", "anyOf", "$ref", "const")), prop
                    )
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(schema.root_schema(Order))

    def test_a_typed_dict_keeps_not_required_keys_optional(self):
        s = schema.root_schema(Point)
        self.assertEqual(s["required"], ["x"])
        self.assertEqual(s["properties"]["y"], {"type": "integer"})

    def test_an_undescribable_type_fails_when_the_tool_is_declared(self):
        with self.assertRaises(schema.SchemaError) as e:

            @toolhost.tool(description="x", effect=toolhost.PURE)
            def bad(ctx: toolhost.Context, input: dict[int, str]) -> str:
                return ""

        self.assertIn("keys are strings", str(e.exception))

    def test_a_recursive_type_is_refused_by_name(self):
        with self.assertRaises(schema.SchemaError) as e:
            schema.schema_for(Node)
        self.assertIn("refers to itself", str(e.exception))


class CallTests(unittest.TestCase):
    def test_the_whole_call_path_runs_natively(self):
        out = toolhost.invoke(total, json.dumps({"items": [{"sku": "a", "price": 2.5}], "colour": "red", "count": 2}))
        self.assertEqual(json.loads(out), {"total": 5.0})

    def test_a_mismatch_names_the_path(self):
        with self.assertRaises(toolhost.InvalidInput) as e:
            toolhost.invoke(total, json.dumps({"items": [{"sku": "a", "price": "2"}], "colour": "red"}))
        self.assertEqual(str(e.exception), "items[0].price: expected a number, got a string")
        with self.assertRaises(toolhost.InvalidInput) as e:
            toolhost.invoke(total, json.dumps({"items": [], "colour": "green"}))
        self.assertIn("colour: expected one of ['red', 'blue']", str(e.exception))
        with self.assertRaises(toolhost.InvalidInput) as e:
            toolhost.invoke(total, json.dumps({"colour": "red"}))
        self.assertEqual(str(e.exception), "items: missing field")

    def test_an_unknown_field_is_named(self):
        with self.assertRaises(toolhost.InvalidInput) as e:
            toolhost.invoke(total, json.dumps({"items": [], "colour": "red", "cuont": 2}))
        self.assertEqual(
            str(e.exception), "cuont: unknown field (known: items, colour, note, count, extra)"
        )
        self.assertFalse(schema.root_schema(Order)["additionalProperties"])

    def test_bad_json_is_invalid_input(self):
        with self.assertRaises(toolhost.InvalidInput):
            toolhost.invoke(total, "{")

    def test_the_three_kinds_and_an_uncaught_exception(self):
        base = {"items": [{"sku": "a", "price": 1}], "colour": "blue"}
        with self.assertRaises(toolhost.InvalidInput):
            toolhost.invoke(total, json.dumps(dict(base, items=[])))
        with self.assertRaises(toolhost.Transient):
            toolhost.invoke(total, json.dumps(dict(base, note="busy")))
        with self.assertRaises(toolhost.Failed) as e:
            toolhost.invoke(total, json.dumps(dict(base, note="bug")))
        self.assertEqual(str(e.exception), "KeyError: 'missing'")

    def test_memory_error_is_left_to_trap(self):
        @toolhost.tool(description="hoards", effect=toolhost.PURE)
        def hoard(ctx: toolhost.Context, input: str) -> str:
            raise MemoryError()

        with self.assertRaises(MemoryError):
            toolhost.invoke(hoard, '"x"')

    def test_a_permission_error_is_capability_denied(self):
        @toolhost.tool(description="reads", effect=toolhost.READ_ONLY)
        def read(ctx: toolhost.Context, input: str) -> str:
            raise PermissionError("/etc/passwd")

        with self.assertRaises(toolhost.CapabilityDenied) as e:
            toolhost.invoke(read, '"x"')
        self.assertTrue(str(e.exception).startswith(toolhost.CAPABILITY_DENIED_PREFIX))

    def test_reconcile_answers(self):
        def look(ctx, input: str):
            return {"yes": toolhost.Committed({"id": 1}), "no": toolhost.NOT_DONE}.get(
                input, toolhost.Unknown("remote down")
            )

        @toolhost.tool(description="pays", effect=toolhost.SIDE_EFFECTING, reconcile=look)
        def pay(ctx: toolhost.Context, input: str) -> dict:
            return {}

        self.assertEqual(toolhost.invoke_reconcile(pay, '"yes"'), ("committed", '{"id":1}'))
        self.assertEqual(toolhost.invoke_reconcile(pay, '"no"'), ("not-done", None))
        self.assertEqual(toolhost.invoke_reconcile(pay, '"?"'), ("unknown", "remote down"))

    def test_an_unknown_effect_is_refused(self):
        with self.assertRaises(ValueError):
            toolhost.tool(description="x", effect="impure")

    def test_world_imports_natively(self):
        cls = toolhost.world(total)
        self.assertTrue(hasattr(cls, "call"))
        self.assertFalse(hasattr(cls, "reconcile"))


class ForwardedKeyTests(unittest.TestCase):
    # The Rust SDK's derivation (guest-sdk/rust/src/forwarded.rs) for the
    # same inputs; the suite also compares against the header the host sent.
    def test_only_mutating_methods_and_http_urls_get_one(self):
        ctx = toolhost.Context.for_tests()
        self.assertIsNone(ctx.forwarded_key("GET", "https://api.example.com/v1"))
        self.assertIsNone(ctx.forwarded_key("POST", "ftp://api.example.com/v1"))
        key = ctx.forwarded_key("post", "HTTPS://user@API.example.com:8443/v1/charges?x=1#f")
        self.assertEqual(len(key), 32)
        self.assertEqual(key, ctx.forwarded_key("POST", "https://api.example.com:8443/v1/charges"))
        self.assertNotEqual(key, ctx.forwarded_key("POST", "https://api.example.com:8443/v1/refunds"))

    def test_split_url(self):
        self.assertEqual(forwarded.split_url("http://h:1"), ("http://h:1", ""))
        self.assertEqual(forwarded.split_url("https://a@h/p?q"), ("https://h", "/p"))
        self.assertIsNone(forwarded.split_url("https:///p"))

    def test_blake3_known_answers(self):
        # The BLAKE3 specification's empty-input hash, and inputs across the
        # block and chunk boundaries checked against the reference crate.
        self.assertEqual(
            _blake3.blake3(b"").hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        )
        try:
            import blake3 as reference
        except ImportError:
            # CI installs it (.ci/run); elsewhere the empty-input answer
            # above and the suite's end-to-end header test still run.
            if os.environ.get("CI") == "true":
                raise
            self.skipTest("pip install blake3 to compare with the reference")
        for n in (1, 63, 64, 65, 1023, 1024, 1025, 2048, 3073, 8193):
            data = bytes((i * 7 + 3) % 251 for i in range(n))
            self.assertEqual(_blake3.blake3(data), reference.blake3(data).digest(), n)
            self.assertEqual(
                _blake3.derive_key(forwarded.CONTEXT, data),
                reference.blake3(data, derive_key_context=forwarded.CONTEXT).digest(),
                n,
            )


if __name__ == "__main__":
    unittest.main()
