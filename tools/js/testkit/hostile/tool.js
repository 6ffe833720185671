// js_hostile: the JavaScript guest's misbehaviours, one mode each, for
// tests/all/lang/js.rs: `spin` never returns (timeout or out_of_fuel),
// `alloc` allocates without bound (memory_limit), `throw` throws a plain
// Error (tool_failed with its message), `read` reads a file (outside every
// grant: capability_denied), `flood` answers past the host's output cap
// (output_too_large), `echo` answers (the host still serves).

import { defineTool, t, files } from "./toolhost.js";

export default defineTool({
  name: "js_hostile",
  description: "Test tool: misbehaves as asked.",
  effect: "pure",
  input: t.object({
    mode: t.enum(["spin", "alloc", "throw", "read", "flood", "echo"]),
    path: t.optional(t.string()),
    text: t.optional(t.string()),
  }),
  run(input) {
    switch (input.mode) {
      case "spin":
        for (;;) {
          // Nothing: the sandbox's fuel or deadline ends this.
        }
      case "alloc": {
        const hoard = [];
        for (;;) hoard.push(new Float64Array(1 << 20).fill(hoard.length));
      }
      case "throw":
        throw new Error(`deliberate: ${input.text ?? "no text"}`);
      case "read":
        return { text: files.readText(input.path) };
      case "flood":
        // Past the host's output cap (1 MiB by default).
        return { text: "x".repeat(2 << 20) };
      default:
        return { text: input.text ?? "" };
    }
  },
});
