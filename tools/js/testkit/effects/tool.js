// js_effects: the side-effecting JavaScript test tool of tests/all/lang/js.rs.
// `append` appends a line to a file in a granted directory (the effect a
// key must run once), then waits `wait_ms` (racing and crash tests); `post` sends a POST with fetch and returns the
// forwarded key the tool computes, to compare with the header the host
// added; `get` fetches a URL (an ungranted host is `capability_denied`).

import { defineTool, t, files, Failed } from "./toolhost.js";

export default defineTool({
  name: "js_effects",
  description: "Test tool: appends a line to a file, or sends an HTTP request.",
  effect: "side-effecting",
  input: t.object({
    mode: t.enum(["append", "post", "get"]),
    path: t.optional(t.string()),
    line: t.optional(t.string()),
    url: t.optional(t.string()),
    wait_ms: t.optional(t.integer({ minimum: 0 })),
  }),
  async run(input, ctx) {
    if (input.mode === "append") {
      files.appendText(input.path, `${input.line}\n`);
      if (input.wait_ms) await new Promise((done) => setTimeout(done, input.wait_ms));
      return { appended: input.line, attempt: ctx.attempt, lines: files.readText(input.path).split("\n").length - 1 };
    }
    const method = input.mode === "post" ? "POST" : "GET";
    const response = await fetch(input.url, {
      method,
      headers: { "content-type": "application/json" },
      body: method === "POST" ? JSON.stringify({ key: ctx.idempotencyKey.length }) : undefined,
    });
    if (!response.ok && response.status !== 404) throw new Failed(`status ${response.status}`);
    return {
      status: response.status,
      body: await response.text(),
      forwarded: ctx.forwardedKey(method, input.url),
    };
  },
});
