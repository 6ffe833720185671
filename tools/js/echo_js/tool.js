// echo_js: returns its message, the JavaScript twin of the Rust `echo`, so
// the benchmarks can put the languages side by side on the same call.

import { defineTool, t } from "./toolhost.js";

export default defineTool({
  name: "echo_js",
  description: "Returns its message unchanged.",
  effect: "pure",
  input: t.object({ message: t.string() }),
  output: t.object({ message: t.string() }),
  run: (input) => ({ message: input.message }),
});
