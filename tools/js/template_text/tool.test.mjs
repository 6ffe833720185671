// Unit tests of template_text, run natively: the suite stages this directory
// with the SDK (as `toolhost tools new` lays a project out) and runs
// `node --test` there (tests/all/lang/js.rs).

import { test } from "node:test";
import assert from "node:assert/strict";

import { invoke, InvalidInput } from "./toolhost.js";
import tool from "./tool.js";

const render = async (input) => JSON.parse(await invoke(tool, JSON.stringify(input)));

test("fills dotted paths and lists what it used and lacked", async () => {
  const out = await render({
    template: "Dear {{ user.name }}, {{count}} items; {{ items.0 }} first; {{ nope }}.",
    vars: { user: { name: "Ada" }, count: 3, items: ["tea"] },
  });
  assert.deepEqual(out, {
    text: "Dear Ada, 3 items; tea first; {{ nope }}.",
    used: ["count", "items.0", "user.name"],
    missing: ["nope"],
  });
});

test("escapes for HTML, URLs and JSON, unless raw", async () => {
  const vars = { v: `<a href="x">&'</a>` };
  assert.equal((await render({ template: "{{v}}", vars, escape: "html" })).text,
    "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
  assert.equal((await render({ template: "{{v|raw}}", vars, escape: "html" })).text, vars.v);
  assert.equal((await render({ template: "q={{q}}", vars: { q: "a b&c" }, escape: "url" })).text, "q=a%20b%26c");
  assert.equal((await render({ template: '{"s":"{{q}}"}', vars: { q: 'say "hi"\n' }, escape: "json" })).text,
    '{"s":"say \\"hi\\"\\n"}');
});

test("filters, values of every type, and a literal {{", async () => {
  const out = await render({
    template: "{{ a | trim | upper }} {{ n }} {{ z }} {{ o | json }} {{ o }} {{{{x}}",
    vars: { a: "  hi ", n: 1.5, z: null, o: { k: [1] } },
  });
  assert.equal(out.text, 'HI 1.5  {"k":[1]} {"k":[1]} {{x}}');
});

test("missing variables kept, emptied or refused", async () => {
  const base = { template: "[{{x}}]", vars: {} };
  assert.equal((await render({ ...base, missing: "empty" })).text, "[]");
  await assert.rejects(invoke(tool, JSON.stringify({ ...base, missing: "error" })),
    (e) => e instanceof InvalidInput && e.message === "the template needs variables it was not given: x");
});

test("a bad placeholder or filter is invalid input naming where", async () => {
  await assert.rejects(invoke(tool, JSON.stringify({ template: "ok {{ 1x }}", vars: {} })),
    (e) => e instanceof InvalidInput && e.message === 'template at 3: "{{ 1x }}" does not name a variable');
  await assert.rejects(invoke(tool, JSON.stringify({ template: "{{x|shout}}", vars: { x: 1 } })),
    (e) => e instanceof InvalidInput && e.message.startsWith('template at 0: unknown filter "shout"'));
  await assert.rejects(invoke(tool, JSON.stringify({ template: "x", vars: {}, escape: "xml" })),
    (e) => e instanceof InvalidInput && e.message.startsWith("escape: expected one of"));
});
