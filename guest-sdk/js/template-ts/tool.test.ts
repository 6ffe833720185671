// Unit tests of {{name}}, run natively in Node: `npm test` type-checks and
// compiles them (with the tool) into .toolhost-test/, then runs them there.
/// <reference types="node" />

import { test } from "node:test";
import assert from "node:assert/strict";

import { invoke, InvalidInput } from "./toolhost.js";
import tool from "./tool.js";

test("greets by name", async () => {
  assert.equal(await invoke(tool, '{"name":"Ada"}'), '{"greeting":"Hello, Ada!"}');
});

test("a missing name is invalid input naming the field", async () => {
  await assert.rejects(invoke(tool, "{}"),
    (e) => e instanceof InvalidInput && e.message === "name: missing field");
});
