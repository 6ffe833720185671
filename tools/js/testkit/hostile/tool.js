// js_hostile: the JavaScript guest's misbehaviours, one mode each, for
// tests/all/lang/js.rs: `spin` never returns (timeout or out_of_fuel),
// `alloc` allocates without bound (memory_limit), `throw` throws a plain
// Error (tool_failed with its message), `read` reads a file (outside every
// grant: capability_denied), `flood` answers 64 KiB, past the output cap
// the test's policy sets (output_too_large), `echo` answers (the host
// still serves).

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
        // Not past the default cap (1 MiB): ComponentizeJS's lowering of
        // the returned string costs about 2,600 fuel a byte, so under the
        // default limits a JavaScript answer runs out of fuel past ~380 KB
        // and out of memory past ~600 KB before it reaches the cap.
        return { text: "x".repeat(64 << 10) };
      default:
        return { text: input.text ?? "" };
    }
  },
});
