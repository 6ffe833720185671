// The TypeScript declarations (toolhost.d.ts) and the TypeScript step of
// the build (typescript.mjs), checked with the pinned compiler: every
// export of toolhost.js is declared, schemas type what they decode, and
// ill-typed tools fail with the diagnostic a tool author would see.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

import * as sdk from "../toolhost.js";
import { compile, formatDiagnostic } from "../typescript.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const ts = createRequire(import.meta.url)("typescript");

const OPTIONS = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.ES2022,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
  lib: ["lib.es2022.d.ts", "lib.webworker.d.ts"],
  types: [],
  strict: true,
  noEmit: true,
};

const made = [];
after(() => made.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

/** A project in a temp dir: the SDK and `files` ({name: text}). */
function project(files) {
  const dir = mkdtempSync(join(tmpdir(), "toolhost-ts-"));
  made.push(dir);
  for (const f of ["toolhost.js", "toolhost.d.ts"]) copyFileSync(join(here, "..", f), join(dir, f));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** The diagnostics of type-checking `source` as a tool, as `line: TSnnnn`. */
function check(source) {
  const dir = project({ "tool.ts": source });
  const program = ts.createProgram({ rootNames: [join(dir, "tool.ts")], options: OPTIONS });
  return ts.getPreEmitDiagnostics(program).map((d) => formatDiagnostic(ts, d, dir));
}

const HEADER = `
import { defineTool, t, committed, NOT_DONE, unknown, InvalidInput, Failed, Transient,
  type Infer, type Context } from "./toolhost.js";
type Equal<A, B> = (<X>() => X extends A ? 1 : 2) extends (<X>() => X extends B ? 1 : 2) ? true : false;
function expectType<_ extends true>() {}
`;

test("every export of toolhost.js is declared, and nothing else is", () => {
  const dts = join(here, "..", "toolhost.d.ts");
  const program = ts.createProgram({ rootNames: [dts], options: OPTIONS });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(dts));
  const declared = checker
    .getExportsOfModule(module)
    .filter((s) => s.flags & ts.SymbolFlags.Value)
    .map((s) => s.name)
    .sort();
  assert.deepEqual(declared, Object.keys(sdk).sort());
  assert.deepEqual(ts.getPreEmitDiagnostics(program).map((d) => formatDiagnostic(ts, d, here)), []);
});

test("a well-typed tool checks, and schemas type what they decode", () => {
  const diagnostics = check(`${HEADER}
const Item = t.object({ sku: t.string(), price: t.number(), tags: t.optional(t.array(t.string())) });
const Order = t.object({
  items: t.array(Item),
  colour: t.enum(["red", "blue"]),
  count: t.integer({ minimum: 1 }).describe("How many."),
  note: t.optional(t.string()),
  extra: t.any(),
  by: t.record(t.union(t.number(), t.null())),
}, { optional: ["count", "extra"] });
expectType<Equal<Infer<typeof Order>, {
  items: { sku: string; price: number; tags?: string[] | null }[];
  colour: "red" | "blue";
  by: { [key: string]: number | null };
  count?: number;
  note?: string | null;
  extra?: import("./toolhost.js").JsonValue;
}>>();

export default defineTool({
  name: "total",
  description: "Adds an order up.",
  effect: "side-effecting",
  input: Order,
  output: t.object({ total: t.number(), colour: t.enum(["red", "blue"]) }),
  async run(input, ctx: Context) {
    if (input.items.length === 0) throw new InvalidInput("an order needs items");
    if (ctx.attempt > 3) throw new Transient("later");
    if (input.note === "bug") throw new Failed("no");
    const total = input.items.reduce((sum, item) => sum + item.price, 0) * (input.count ?? 1);
    return { total, colour: input.colour };
  },
  reconcile: (input, ctx) => {
    if (ctx.forwardedKey("POST", "https://api.example/v1") === null) return unknown("no key");
    return input.items.length ? committed({ total: 1, colour: "red" as const }) : NOT_DONE;
  },
});

// Without an output schema, run's result is not typed.
export const free = defineTool({
  name: "free", description: "", effect: "pure", input: t.object({}), run: () => [1, "two"],
});
`);
  assert.deepEqual(diagnostics, []);
});

/** A tool whose `run` is `body`, over input `{name, times?}` and output
 * `{greeting}`. */
const tool = (body, extra = "") => `${HEADER}
export default defineTool({
  name: "greet", description: "Greets.", effect: "pure",
  input: t.object({ name: t.string(), times: t.optional(t.integer()) }),
  output: t.object({ greeting: t.string() }),
  ${body},${extra}
});
`;

for (const [what, source, code] of [
  ["a misspelt input property", tool("run: (input) => ({ greeting: input.nmae })"), 2339],
  ["an optional property used as required", tool("run: (input) => ({ greeting: 'x'.repeat(input.times) })"), 2345],
  ["a misspelt output property", tool("run: (input) => ({ greting: input.name })"), 2322],
  ["an output of the wrong type", tool("run: async (input) => ({ greeting: input.name.length })"), 2322],
  ["a context field that does not exist", tool("run: (input, ctx) => ({ greeting: ctx.key })"), 2339],
  ["an unknown effect", tool("run: (input) => ({ greeting: input.name })").replace('"pure"', '"pur"'), 2820],
  ["reconcile committing a wrong output",
    tool("run: (input) => ({ greeting: input.name })", " reconcile: () => committed({ greeting: 1 })"), 2322],
  ["reconcile answering something else",
    tool("run: (input) => ({ greeting: input.name })", " reconcile: () => 'done'"), 2322],
  ["an enum value outside the list",
    `${HEADER} const C = t.enum(["red", "blue"]); const c: Infer<typeof C> = "green";`, 2322],
  ["a non-schema property", `${HEADER} t.object({ name: "string" });`, 2322],
  ["an optional list naming no property", `${HEADER} t.object({ name: t.string() }, { optional: ["nmae"] });`, 2322],
]) {
  test(`a type error fails the check: ${what}`, () => {
    const diagnostics = check(source);
    assert.ok(
      diagnostics.some((d) => new RegExp(`^tool\\.ts:\\d+:\\d+: error TS${code}: `).test(d)),
      `expected TS${code}, got:\n${diagnostics.join("\n")}`,
    );
  });
}

test("compile writes JavaScript beside the SDK, or reports file:line:col", async () => {
  const good = project({ "tool.ts": tool("run: (input) => ({ greeting: `Hi ${input.name}` })") });
  const out = join(good, "out");
  const built = await compile(ts, { project: good, roots: [join(good, "tool.ts")], outDir: out });
  assert.deepEqual(built, { ok: true, diagnostics: [], problem: null });
  // The compiled tool imports the copy of the SDK beside it.
  const { default: greet } = await import(join(out, "tool.js"));
  const { invoke } = await import(join(out, "toolhost.js"));
  assert.equal(await invoke(greet, '{"name":"Ada"}'), '{"greeting":"Hi Ada"}');
  assert.ok(readFileSync(join(out, "toolhost.js"), "utf8").includes("export function defineTool"));

  const bad = project({ "tool.ts": tool("run: (input) => ({ greeting: input.nmae })") });
  const failed = await compile(ts, { project: bad, roots: [join(bad, "tool.ts")], outDir: join(bad, "out") });
  assert.equal(failed.ok, false);
  assert.match(failed.diagnostics[0], /^tool\.ts:11:38: error TS2339: Property 'nmae' does not exist/);

  const cjs = project({
    "tool.ts": tool("run: (input) => ({ greeting: input.name })"),
    "tsconfig.json": '{ "compilerOptions": { "module": "CommonJS", "strict": true } }',
  });
  const refused = await compile(ts, { project: cjs, roots: [join(cjs, "tool.ts")], outDir: join(cjs, "out") });
  assert.equal(refused.ok, false);
  assert.match(refused.problem, /"module" is CommonJS/);
});
