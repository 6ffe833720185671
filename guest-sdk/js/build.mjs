#!/usr/bin/env node
// Builds a toolhost tool written in JavaScript or TypeScript into a
// WebAssembly component with ComponentizeJS
// (@bytecodealliance/componentize-js, pinned in package.json):
//
//     node build.mjs --source tool.js --wit wit --out greet.wasm [--world tool|reconciling-tool]
//     node build.mjs --source tool.ts --wit wit --out greet.wasm
//     node build.mjs --emit DIR tool.test.ts ...   # type-check and transpile only
//
// The tool module's default export is what `defineTool` returned. The world
// is `reconciling-tool` when the tool has `reconcile`, else `tool`; `--world`
// only checks that. Relative paths are taken from the source's directory,
// which is also the root ComponentizeJS sees (a tool may import modules
// beside it, not above it).
//
// What it does, and why:
// - a `.ts` source is type-checked first, with the TypeScript compiler
//   (typescript, pinned in package.json; `typescript.mjs`): any type error
//   is printed as `file:line:col: error TSnnnn: message` and the build
//   exits 1 before ComponentizeJS starts. The JavaScript it compiles to is
//   what the rest of the build uses. `--emit DIR` does only this, for unit
//   tests (`npm test` in a TypeScript project runs them from DIR in Node);
// - writes, in `.toolhost-build/` beside the source, the module the
//   component is built from: it imports the tool and re-exports `describe`,
//   `call` (and `reconcile`), which ComponentizeJS binds to the WIT exports
//   by name, and hands the SDK the `wasi:filesystem` bindings (`files`);
// - builds against the given WIT plus a world that adds
//   `wasi:filesystem/preopens` to it: ComponentizeJS stubs the file system
//   out (every call traps) unless the world imports it. The WASI packages
//   come from the WIT that ships with componentize-js's own jco;
// - keeps the engine's `stdio` (errors reach stderr), `random`, `clocks`
//   and `http` (the global `fetch`, over wasi:http) features and drops
//   `fetch-event` (an incoming HTTP handler: a tool has none).
//
// Exit codes: 0 built, 1 the build (or the type check) failed, 2 usage or a
// missing toolchain.

import { cp, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { existsSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import process from "node:process";

const COMPONENTIZE_JS = "@bytecodealliance/componentize-js";
const COMPONENTIZE_JS_VERSION = "0.23.0";
const TYPESCRIPT = "typescript";
const TYPESCRIPT_VERSION = "5.9.3";
// The WASI release whose WIT the engine of componentize-js 0.23.0 imports.
const WASI_VERSION = "0.2.12";
const WASI_PACKAGES = ["filesystem", "io", "clocks"];
const WORLDS = { tool: "js-tool", "reconciling-tool": "js-reconciling-tool" };

class Usage extends Error {}

/** A build that failed for a reason already explained (type errors): exit
 * 1 with the message, no stack. */
class Failed extends Error {}

const USAGE = [
  "usage: node build.mjs --source tool.js|tool.ts --wit WIT_DIR --out OUT.wasm [--world tool|reconciling-tool]",
  "       node build.mjs --emit DIR FILE.ts...",
].join("\n");

function parseArgs(argv) {
  const known = new Set(["--source", "--wit", "--world", "--out", "--emit"]);
  const args = { files: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--help" || argv[i] === "-h") throw new Usage("");
    if (!argv[i].startsWith("-") && args.emit !== undefined) {
      args.files.push(argv[i]);
      continue;
    }
    if (!known.has(argv[i]) || i + 1 >= argv.length) {
      throw new Usage(`unexpected argument ${JSON.stringify(argv[i])}`);
    }
    args[argv[i].slice(2)] = argv[++i];
  }
  if (args.emit !== undefined) {
    if (args.files.length === 0 || args.source || args.wit || args.out) {
      throw new Usage("--emit DIR takes the TypeScript files to compile, and no other option");
    }
    const odd = args.files.find((f) => !isTypeScript(f));
    if (odd) throw new Usage(`--emit compiles TypeScript (.ts, .mts), not ${JSON.stringify(odd)}`);
    return args;
  }
  if (!args.source || !args.wit || !args.out) throw new Usage("--source, --wit and --out are needed");
  if (args.world && !(args.world in WORLDS)) {
    throw new Usage(`--world is tool or reconciling-tool, not ${JSON.stringify(args.world)}`);
  }
  return args;
}

/** The directory of package `name` as Node would find it from `dir`
 * (`node_modules` here or in a parent), or null. */
function findPackage(dir, name) {
  for (let at = resolve(dir); ; at = dirname(at)) {
    const candidate = join(at, "node_modules", ...name.split("/"));
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(at) === at) return null;
  }
}

/** componentize-js, found from the project (its node_modules). */
async function loadComponentizeJs(project) {
  const dir = findPackage(project, COMPONENTIZE_JS);
  if (dir === null) {
    throw new Usage(
      `${COMPONENTIZE_JS} is not installed in ${project}: run \`npm install\` there ` +
        `(it installs ${COMPONENTIZE_JS}@${COMPONENTIZE_JS_VERSION} from package.json)`,
    );
  }
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  if (manifest.version !== COMPONENTIZE_JS_VERSION) {
    console.error(
      `warning: ${COMPONENTIZE_JS} ${manifest.version} is installed; this build is tested with ` +
        `${COMPONENTIZE_JS_VERSION} (npm install ${COMPONENTIZE_JS}@${COMPONENTIZE_JS_VERSION})`,
    );
  }
  const { componentize } = await import(pathToFileURL(join(dir, manifest.exports.import)).href);
  return { componentize, dir };
}

/** Whether `path` is TypeScript (`.ts`, `.mts`, not a declaration file). */
function isTypeScript(path) {
  return /\.m?ts$/.test(path) && !/\.d\.m?ts$/.test(path);
}

/** The TypeScript compiler, found from the project (its node_modules). */
function loadTypeScript(project) {
  const dir = findPackage(project, TYPESCRIPT);
  if (dir === null) {
    throw new Usage(
      `${TYPESCRIPT} is not installed in ${project}: run \`npm install\` there ` +
        `(it installs ${TYPESCRIPT}@${TYPESCRIPT_VERSION} from package.json)`,
    );
  }
  const version = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).version;
  if (!version.startsWith("5.")) {
    throw new Usage(
      `${TYPESCRIPT} ${version} is installed; the build uses the compiler API of TypeScript 5 ` +
        `(npm install ${TYPESCRIPT}@${TYPESCRIPT_VERSION})`,
    );
  }
  if (version !== TYPESCRIPT_VERSION) {
    console.error(`warning: ${TYPESCRIPT} ${version} is installed; this build is tested with ${TYPESCRIPT_VERSION}`);
  }
  return createRequire(join(project, "package.json"))(dir);
}

/** Type-checks the program rooted at `roots` and writes its JavaScript to
 * `outDir`; prints the diagnostics, and fails on an error. Returns where
 * each root's JavaScript is. */
async function compileTypeScript(project, roots, outDir) {
  const ts = loadTypeScript(project);
  const { compile, compiledPath } = await import(new URL("./typescript.mjs", import.meta.url).href);
  const started = Date.now();
  const { ok, diagnostics, problem } = await compile(ts, { project, roots, outDir });
  for (const line of diagnostics) console.error(line);
  if (problem) throw new Usage(problem);
  if (!ok) {
    const errors = diagnostics.filter((d) => / error TS\d+: /.test(d) || d.startsWith("error TS")).length;
    const names = roots.map((r) => relative(project, r)).join(", ");
    throw new Failed(`the type check of ${names} failed: ${errors} error${errors === 1 ? "" : "s"} (above)`);
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  console.error(`type-checked ${roots.map((r) => relative(project, r)).join(", ")} with TypeScript ${ts.version} in ${seconds} s`);
  return roots.map((root) => compiledPath(project, root, outDir));
}

/** `--emit DIR FILE...`: the type check and the JavaScript, no component.
 * DIR is emptied first only when an earlier `--emit` made it. */
async function emit(args) {
  const roots = args.files.map((f) => resolve(f));
  for (const root of roots) if (!existsSync(root)) throw new Usage(`no source file ${root}`);
  const project = dirname(roots[0]);
  const outDir = resolve(args.emit);
  const marker = join(outDir, ".toolhost-emit");
  if (existsSync(outDir)) {
    if (!existsSync(marker)) {
      throw new Usage(`${outDir} exists and was not made by --emit: choose another directory`);
    }
    await rm(outDir, { recursive: true, force: true });
  }
  await mkdir(outDir, { recursive: true });
  await writeFile(marker, "made by build.mjs --emit: removed by the next one\n");
  await compileTypeScript(project, roots, outDir);
}

/** The WASI WIT packages that ship with componentize-js's jco. */
function wasiWit(componentizeDir) {
  const jco = findPackage(componentizeDir, "@bytecodealliance/jco");
  const builtin = join(jco ?? "", "lib", "wit", "builtin", WASI_VERSION);
  const missing = WASI_PACKAGES.filter((p) => !existsSync(join(builtin, `wasi-${p}`, "package.wit")));
  if (jco === null || missing.length) {
    throw new Error(`the WASI ${WASI_VERSION} WIT is not in ${builtin}: reinstall ${COMPONENTIZE_JS}`);
  }
  return builtin;
}

/** The tool the module declares, loaded natively. */
async function loadTool(source) {
  const module = await import(pathToFileURL(source).href);
  const tool = module.default;
  if (!tool || typeof tool.describe !== "function" || typeof tool.call !== "function") {
    throw new Usage(
      `${source} must \`export default defineTool({...})\` (from ./toolhost.js); its default export is ${typeof tool}`,
    );
  }
  return tool;
}

function entryModule(sourceFromStage, world) {
  const exports = world === "reconciling-tool" ? ["describe", "call", "reconcile"] : ["describe", "call"];
  return [
    "// Written by build.mjs: the module ComponentizeJS builds (see there).",
    `import * as preopens from "wasi:filesystem/preopens@${WASI_VERSION}";`,
    `import { bindWasi } from "${sourceFromStage.replace(/[^/]*$/, "toolhost.js")}";`,
    `import tool from "${sourceFromStage}";`,
    "bindWasi({ preopens });",
    ...exports.map((name) => `export const ${name} = tool.${name};`),
    "",
  ].join("\n");
}

function jsWorlds() {
  return [
    "// Written by build.mjs: the toolhost worlds plus the file system, which",
    "// ComponentizeJS stubs out unless the world imports it.",
    "package toolhost:tool@0.2.0;",
    "",
    ...Object.entries(WORLDS).flatMap(([world, js]) => [
      `world ${js} {`,
      `  include ${world};`,
      `  import wasi:filesystem/preopens@${WASI_VERSION};`,
      "}",
      "",
    ]),
  ].join("\n");
}

async function build(args) {
  const source = resolve(args.source);
  if (!existsSync(source)) throw new Usage(`no source file ${source}`);
  const project = dirname(source);
  const wit = resolve(args.wit);
  if (!existsSync(wit) || !statSync(wit).isDirectory()) throw new Usage(`no WIT directory ${wit}`);
  const out = resolve(args.out);

  const { componentize, dir } = await loadComponentizeJs(project);
  const stage = join(project, ".toolhost-build");
  await rm(stage, { recursive: true, force: true });
  try {
    // The module the component runs: the source, or what it compiles to.
    let module = source;
    if (isTypeScript(source)) {
      [module] = await compileTypeScript(project, [source], join(stage, "src"));
    }
    const tool = await loadTool(module);
    const world = typeof tool.reconcile === "function" ? "reconciling-tool" : "tool";
    if (args.world && args.world !== world) {
      throw new Usage(
        `--world ${args.world}, but the tool ${world === "tool" ? "has no" : "has a"} reconcile: its world is ${world}`,
      );
    }

    await mkdir(join(stage, "wit", "deps"), { recursive: true });
    for (const file of await readdir(wit)) {
      if (file.endsWith(".wit")) await cp(join(wit, file), join(stage, "wit", file));
    }
    const builtin = wasiWit(dir);
    for (const p of WASI_PACKAGES) {
      await cp(join(builtin, `wasi-${p}`), join(stage, "wit", "deps", p), { recursive: true });
    }
    await writeFile(join(stage, "wit", "js.wit"), jsWorlds());
    const fromStage = relative(stage, module).split("\\").join("/");
    const importable = fromStage.startsWith(".") ? fromStage : `./${fromStage}`;
    await writeFile(join(stage, "entry.js"), entryModule(importable, world));

    // ComponentizeJS maps the working directory to the component's root
    // and wants the WIT path relative to it.
    const started = Date.now();
    const here = process.cwd();
    process.chdir(project);
    let component;
    try {
      ({ component } = await componentize({
        sourcePath: join(".toolhost-build", "entry.js"),
        witPath: join(".toolhost-build", "wit"),
        worldName: WORLDS[world],
        disableFeatures: ["fetch-event"],
      }));
    } finally {
      process.chdir(here);
    }
    await mkdir(dirname(out), { recursive: true });
    await writeFile(out, component);
    const mb = (component.length / 1e6).toFixed(1);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.error(`built ${basename(out)} (${tool.name}, world ${world}): ${mb} MB in ${seconds} s`);
  } finally {
    await rm(stage, { recursive: true, force: true });
  }
}

try {
  const args = parseArgs(process.argv.slice(2));
  await (args.emit !== undefined ? emit(args) : build(args));
} catch (e) {
  if (e instanceof Usage) {
    if (e.message) console.error(`error: ${e.message}`);
    console.error(USAGE);
    process.exit(e.message ? 2 : 0);
  }
  if (e instanceof Failed) {
    console.error(`error: ${e.message}`);
    process.exit(1);
  }
  console.error(`error: the build failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}
