// Unit tests of the JavaScript SDK, run natively (`node --test` from
// guest-sdk/js; the Rust suite runs them in tests/all/lang/js.rs). They
// mirror the Python SDK's (guest-sdk/python/tests/test_sdk.py).

import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import {
  defineTool, t, invoke, invokeReconcile, testContext, files,
  InvalidInput, Failed, Transient, CapabilityDenied, CAPABILITY_DENIED_PREFIX,
  committed, NOT_DONE, unknown, ANY_TYPE,
} from "../toolhost.js";

const Item = t.object({
  sku: t.string(),
  price: t.number(),
  tags: t.optional(t.array(t.string())),
}, { description: "One line of an order." });

const Order = t.object({
  items: t.array(Item),
  colour: t.enum(["red", "blue"]),
  note: t.optional(t.string()),
  count: t.integer({ minimum: 1 }).describe("How many."),
  extra: t.any(),
}, { optional: ["count", "extra"] });

const total = defineTool({
  name: "total",
  description: "Adds an order up.",
  effect: "pure",
  input: Order,
  output: t.object({ total: t.number() }),
  run(input) {
    if (input.items.length === 0) throw new InvalidInput("an order needs items");
    if (input.note === "busy") throw new Transient("try later");
    if (input.note === "bug") return input.missing.field;
    if (input.note === "async") return Promise.reject(new RangeError("later, and wrong"));
    if (input.note === "string") throw "a string";
    if (input.note === "nan") return { total: NaN };
    if (input.note === "oom") throw "out of memory";
    return { total: input.items.reduce((n, i) => n + i.price, 0) * (input.count ?? 1) };
  },
});

const base = { items: [{ sku: "a", price: 1 }], colour: "blue" };
const call = (input) => invoke(total, JSON.stringify(input));

test("an object becomes a typed 2020-12 schema with its required fields", () => {
  const s = JSON.parse(total.describe().inputSchema);
  assert.equal(s.$schema, "https://json-schema.org/draft/2020-12/schema");
  assert.equal(s.type, "object");
  assert.deepEqual(s.required, ["items", "colour"]);
  const item = s.properties.items.items;
  assert.deepEqual(item.properties.price, { type: "number" });
  assert.equal(item.description, "One line of an order.");
  assert.deepEqual(item.required, ["sku", "price"]);
  assert.deepEqual(s.properties.colour, { enum: ["red", "blue"], type: "string" });
  assert.deepEqual(s.properties.note, { anyOf: [{ type: "string" }, { type: "null" }] });
  assert.deepEqual(s.properties.count, { type: "integer", minimum: 1, description: "How many." });
  assert.deepEqual(s.properties.extra, { type: ANY_TYPE });
  assert.deepEqual(JSON.parse(total.describe().outputSchema).required, ["total"]);
});

test("every property has a type or an equivalent", () => {
  const walk = (node) => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== "object") return;
    for (const prop of Object.values(node.properties ?? {})) {
      assert.ok(["type", "enum", "anyOf", "const"].some((k) => k in prop), JSON.stringify(prop));
    }
    Object.values(node).forEach(walk);
  };
  walk(JSON.parse(total.describe().inputSchema));
});

test("describe has the WIT record's shape", () => {
  const m = total.describe();
  assert.deepEqual(Object.keys(m).sort(),
    ["description", "effect", "inputSchema", "name", "outputSchema", "version"]);
  assert.equal(m.version, "0.1.0");
  assert.equal(m.effect, "pure");
  const bare = defineTool({ name: "bare", description: "", effect: "read-only",
    input: t.any(), run: () => 1 });
  assert.equal(bare.describe().outputSchema, undefined);
  assert.equal(bare.reconcile, undefined);
});

test("records, unions and bounds", async () => {
  const tool = defineTool({
    name: "shapes", description: "", effect: "pure",
    input: t.object({
      scores: t.record(t.integer()),
      id: t.union(t.string(), t.integer()),
      word: t.string({ minLength: 2, maxLength: 3 }),
      list: t.array(t.boolean(), { maxItems: 1 }),
    }),
    run: (input) => input,
  });
  const ok = { scores: { a: 1 }, id: 7, word: "ab", list: [true], dropped: 1 };
  assert.equal(await invoke(tool, JSON.stringify(ok)),
    '{"scores":{"a":1},"id":7,"word":"ab","list":[true]}');
  const bad = async (change, message) =>
    assert.rejects(invoke(tool, JSON.stringify({ ...ok, ...change })),
      (e) => e instanceof InvalidInput && e.message === message);
  await bad({ scores: { a: 1.5 } }, "scores.a: expected an integer, got a number");
  await bad({ id: true },
    "id: matches none of: id: expected a string, got a boolean; id: expected an integer, got a boolean");
  await bad({ word: "a" }, "word: expected at least 2, got 1");
  await bad({ word: "abcd" }, "word: expected at most 3, got 4");
  await bad({ list: [true, false] }, "list: expected at most 1, got 2");
  const s = JSON.parse(tool.describe().inputSchema);
  assert.deepEqual(s.properties.scores, { type: "object", additionalProperties: { type: "integer" } });
  assert.deepEqual(s.properties.word, { type: "string", minLength: 2, maxLength: 3 });
});

test("the whole call path runs natively", async () => {
  assert.equal(await call({ ...base, items: [{ sku: "a", price: 2.5 }], count: 2 }), '{"total":5}');
});

test("a mismatch names the path", async () => {
  await assert.rejects(call({ items: [{ sku: "a", price: "2" }], colour: "red" }),
    (e) => e instanceof InvalidInput && e.message === "items[0].price: expected a number, got a string");
  await assert.rejects(call({ items: [], colour: "green" }),
    (e) => e instanceof InvalidInput && e.message === 'colour: expected one of ["red","blue"], got "green"');
  await assert.rejects(call({ colour: "red" }),
    (e) => e instanceof InvalidInput && e.message === "items: missing field");
  await assert.rejects(call({ ...base, count: 0 }),
    (e) => e instanceof InvalidInput && e.message === "count: expected at least 1, got 0");
  await assert.rejects(invoke(total, "[]"),
    (e) => e instanceof InvalidInput && e.message === "expected an object, got an array");
});

test("bad JSON is invalid input", async () => {
  await assert.rejects(invoke(total, "{"),
    (e) => e instanceof InvalidInput && e.message.startsWith("input is not JSON: "));
});

test("the three kinds, and whatever else is thrown", async () => {
  await assert.rejects(call({ ...base, items: [] }), InvalidInput);
  await assert.rejects(call({ ...base, note: "busy" }), Transient);
  await assert.rejects(call({ ...base, note: "bug" }), (e) => e instanceof Failed &&
    e.message === "TypeError: Cannot read properties of undefined (reading 'field')");
  await assert.rejects(call({ ...base, note: "async" }),
    (e) => e instanceof Failed && e.message === "RangeError: later, and wrong");
  await assert.rejects(call({ ...base, note: "string" }),
    (e) => e instanceof Failed && e.message === 'thrown value: "a string"');
  await assert.rejects(call({ ...base, note: "nan" }),
    (e) => e instanceof Failed && e.message === "the output holds NaN, which JSON cannot carry");
  await assert.rejects(call({ ...base, note: "oom" }),
    (e) => e instanceof Failed && e.message === "the JavaScript engine ran out of memory");
});

test("the WIT exports return ok values and throw tool-error variants", async () => {
  const ctx = { idempotencyKey: "ab".repeat(32), attempt: 2, deadlineMs: 5000n };
  assert.equal(await total.call(ctx, JSON.stringify(base)), '{"total":1}');
  const thrown = async (input) => {
    try {
      await total.call(ctx, JSON.stringify(input));
    } catch (e) {
      return e;
    }
    assert.fail("no error");
  };
  assert.deepEqual(await thrown({ ...base, items: [] }), { tag: "invalid-input", val: "an order needs items" });
  assert.deepEqual(await thrown({ ...base, note: "busy" }), { tag: "transient", val: "try later" });
  assert.deepEqual(await thrown({ ...base, note: "string" }),
    { tag: "failed", val: 'thrown value: "a string"' });
  // The engine's out-of-memory escapes as it came, to trap: memory_limit.
  assert.equal(await thrown({ ...base, note: "oom" }), "out of memory");
  const seen = defineTool({ name: "ctx", description: "", effect: "side-effecting", input: t.any(),
    run: (input, c) => ({ key: c.idempotencyKey, attempt: c.attempt, deadline: c.deadlineMs,
      forwarded: c.forwardedKey("POST", "http://127.0.0.1:1/x") }) });
  const out = JSON.parse(await seen.call(ctx, "null"));
  assert.deepEqual(out, { key: ctx.idempotencyKey, attempt: 2, deadline: 5000,
    forwarded: testContext({ idempotencyKey: ctx.idempotencyKey }).forwardedKey("POST", "http://127.0.0.1:1/x") });
});

test("a refused access is capability_denied", async () => {
  const read = defineTool({ name: "read", description: "", effect: "read-only", input: t.string(),
    run(path) {
      const e = new Error(`EACCES: permission denied, open '${path}'`);
      e.code = "EACCES";
      throw e;
    } });
  await assert.rejects(invoke(read, '"/etc/shadow"'), (e) => e instanceof CapabilityDenied &&
    e instanceof Failed && e.message.startsWith(CAPABILITY_DENIED_PREFIX));
});

test("reconcile answers", async () => {
  const pay = defineTool({
    name: "pay", description: "pays", effect: "side-effecting", input: t.string(),
    run: () => ({}),
    reconcile: (input) => ({ yes: committed({ id: 1 }), no: NOT_DONE, bad: 42 })[input] ?? unknown("remote down"),
  });
  assert.deepEqual(await invokeReconcile(pay, '"yes"'), ["committed", '{"id":1}']);
  assert.deepEqual(await invokeReconcile(pay, '"no"'), ["not-done", null]);
  assert.deepEqual(await invokeReconcile(pay, '"?"'), ["unknown", "remote down"]);
  await assert.rejects(invokeReconcile(pay, '"bad"'), (e) => e instanceof Failed &&
    e.message === "TypeError: reconcile returned 42; return committed(output), NOT_DONE or unknown(reason)");
  await assert.rejects(invokeReconcile(pay, "1"), InvalidInput);
  const ctx = testContext();
  assert.deepEqual(await pay.reconcile(ctx, '"yes"'), { tag: "committed", val: '{"id":1}' });
  assert.deepEqual(await pay.reconcile(ctx, '"no"'), { tag: "not-done" });
  assert.deepEqual(await pay.reconcile(ctx, '"?"'), { tag: "unknown", val: "remote down" });
  await assert.rejects(invokeReconcile(total, "{}"), TypeError);
});

test("a bad declaration fails when the tool is declared", () => {
  const ok = { name: "x", description: "x", effect: "pure", input: t.any(), run: () => null };
  assert.throws(() => defineTool({ ...ok, effect: "impure" }), /effect "impure" is not one of/);
  assert.throws(() => defineTool({ ...ok, name: "Bad Name" }), /name must be/);
  assert.throws(() => defineTool({ ...ok, input: { type: "string" } }), /schema built with t/);
  assert.throws(() => t.object({ a: t.string() }, { optional: ["b"] }), /optional names no property: b/);
  assert.throws(() => t.enum([]), /non-empty/);
});

test("files reach node:fs natively", () => {
  const dir = mkdtempSync(join(tmpdir(), "toolhost-js-"));
  const path = join(dir, "log.txt");
  assert.equal(files.exists(path), false);
  files.appendText(path, "a\n");
  files.appendText(path, "b\n");
  assert.equal(files.readText(path), "a\nb\n");
  files.writeText(path, "c");
  assert.equal(readFileSync(path, "utf8"), "c");
});
