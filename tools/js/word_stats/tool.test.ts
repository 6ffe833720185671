// Unit tests of word_stats, run natively in Node (the suite compiles them
// with build.mjs --emit, as `npm test` does in a TypeScript project).
/// <reference types="node" />

import { test } from "node:test";
import assert from "node:assert/strict";

import { invoke, InvalidInput } from "./toolhost.js";
import tool, { stats } from "./tool.js";

const TEXT = "The cat sat.  The cat ran!\nDon't stop: well-known cats…\n\nA new paragraph, 3.14 long?\n";

test("counts words, lines, sentences and paragraphs", () => {
  assert.deepEqual(stats({ text: TEXT, top: 3 }), {
    characters: [...TEXT].length,
    words: 15,
    unique_words: 13,
    lines: 4,
    sentences: 4,
    paragraphs: 2,
    reading_minutes: 0.1,
    top: [{ word: "cat", count: 2 }, { word: "the", count: 2 }, { word: "3.14", count: 1 }],
  });
});

test("ignored words leave the top list, case-insensitively", () => {
  const top = stats({ text: "The the THE end", ignore: ["THE"] }).top;
  assert.deepEqual(top, [{ word: "end", count: 1 }]);
});

test("an empty text is all zeros", () => {
  const empty = stats({ text: "" });
  assert.deepEqual([empty.words, empty.lines, empty.sentences, empty.paragraphs], [0, 0, 0, 0]);
});

test("the call path checks the input against the schema", async () => {
  await assert.rejects(invoke(tool, '{"text": 3}'),
    (e) => e instanceof InvalidInput && e.message === "text: expected a string, got an integer");
  await assert.rejects(invoke(tool, '{"text": "x", "top": 101}'),
    (e) => e instanceof InvalidInput && e.message === "top: expected at most 100, got 101");
});
