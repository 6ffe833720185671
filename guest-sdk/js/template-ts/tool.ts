// The tool {{name}}: pure, so toolhost replays its answers from the cache.
// The SDK (toolhost.js, typed by toolhost.d.ts) and its build (build.mjs,
// typescript.mjs) are copies; README.md says how to build, test and
// install it. `input` is typed from the schema: `input.nmae` does not build.

import { defineTool, t } from "./toolhost.js";

export default defineTool({
  name: "{{name}}",
  description: "Greets someone by name.",
  effect: "pure",
  input: t.object({ name: t.string().describe("Who to greet.") }),
  output: t.object({ greeting: t.string() }),
  run: (input, ctx) => ({ greeting: `Hello, ${input.name}!` }),
});
