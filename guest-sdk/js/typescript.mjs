// The TypeScript step of build.mjs: type-checks a tool written in
// TypeScript with the compiler's API (typescript, pinned in package.json)
// and transpiles it to the JavaScript ComponentizeJS builds from.
//
// Why the compiler API, and not `tsc`, esbuild or Node's type stripping
// (docs/decisions/0091-typescript-build-step.md): only the compiler checks
// types, so only it turns `input.nmae` into a build error; a program built
// in-process returns its diagnostics as values, which this module prints
// as `file:line:col: error TSnnnn: message`, and emits where the build
// wants the JavaScript without a second tsconfig; Node 20 strips no types.
//
// The program's roots are the files given (the tool's source, or a unit
// test), not the tsconfig's `include`: a test's `@types/node` never types
// the tool, which runs in StarlingMonkey, not in Node. The tsconfig beside
// them (if any) gives the compiler options; the ones that decide where and
// what is emitted are this module's.

import { copyFile, mkdir, readdir, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";

/** The compiler options when the project has no tsconfig.json: what the
 * tsconfig `toolhost tools new --lang ts` writes says. */
const DEFAULTS = {
  target: "ES2022",
  module: "ES2022",
  moduleResolution: "Bundler",
  lib: ["ES2022", "WebWorker"],
  types: [],
  strict: true,
  noUncheckedIndexedAccess: true,
  forceConsistentCasingInFileNames: true,
};

/** Where the JavaScript compiled from `source` lands under `outDir`. */
export function compiledPath(project, source, outDir) {
  return join(outDir, relative(project, source)).replace(/\.(m?)ts$/, ".$1js");
}

/** A diagnostic as `file:line:col: error TSnnnn: message` (file relative
 * to the project), the form editors and CI logs link. */
export function formatDiagnostic(ts, d, project) {
  const level = ts.DiagnosticCategory[d.category].toLowerCase();
  const text = ts.flattenDiagnosticMessageText(d.messageText, "\n    ");
  if (d.file && d.start !== undefined) {
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const file = relative(project, d.file.fileName).split(sep).join("/");
    return `${file}:${line + 1}:${character + 1}: ${level} TS${d.code}: ${text}`;
  }
  return `${level} TS${d.code}: ${text}`;
}

/** The compiler options: the project's tsconfig.json (or DEFAULTS) with
 * emit settings forced; problems with the config are diagnostics. */
function compilerOptions(ts, project, outDir) {
  const diagnostics = [];
  const configPath = join(project, "tsconfig.json");
  let options;
  if (existsSync(configPath)) {
    const { config, error } = ts.readConfigFile(configPath, ts.sys.readFile);
    if (error) return { options: {}, diagnostics: [error] };
    const parsed = ts.parseJsonConfigFileContent(config, ts.sys, project, undefined, configPath);
    // TS18003 "No inputs were found": the roots are ours, not `include`'s.
    diagnostics.push(...parsed.errors.filter((d) => d.code !== 18003));
    options = parsed.options;
  } else {
    const converted = ts.convertCompilerOptionsFromJson(DEFAULTS, project);
    diagnostics.push(...converted.errors);
    options = converted.options;
  }
  return {
    options: {
      ...options,
      outDir,
      rootDir: project,
      noEmit: false,
      noEmitOnError: true,
      emitDeclarationOnly: false,
      declaration: false,
      declarationMap: false,
      sourceMap: false,
      inlineSourceMap: false,
      composite: false,
      incremental: false,
    },
    diagnostics,
  };
}

/** Why the emitted JavaScript would not be an ES module (StarlingMonkey
 * loads nothing else), or null. */
function notEsm(ts, options, program, project, roots) {
  const K = ts.ModuleKind;
  const kind = options.module ?? (options.target >= ts.ScriptTarget.ES2015 ? K.ES2015 : K.CommonJS);
  if ([K.None, K.CommonJS, K.AMD, K.UMD, K.System].includes(kind)) {
    return `tsconfig.json: "module" is ${K[kind]}; a tool is an ES module: use "ES2022" (or "NodeNext" with "type": "module" in package.json)`;
  }
  for (const root of roots) {
    const file = program.getSourceFile(root);
    if (file && file.impliedNodeFormat === K.CommonJS && [K.Node16, K.NodeNext].includes(kind)) {
      return `${relative(project, root)} would compile to CommonJS: add "type": "module" to ${join(project, "package.json")}`;
    }
  }
  return null;
}

/** The project's JavaScript files, which the compiled ones import (the
 * SDK's toolhost.js above all; its types come from toolhost.d.ts), copied
 * beside them. Not node_modules, dot-directories or `outDir` itself. */
async function copyJavaScript(project, outDir, at = project) {
  for (const entry of await readdir(at, { withFileTypes: true })) {
    const path = join(at, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === "node_modules" || entry.name.startsWith(".") || resolve(path) === outDir) continue;
      await copyJavaScript(project, outDir, path);
    } else if (/\.[cm]?js$/.test(entry.name)) {
      const to = join(outDir, relative(project, path));
      await mkdir(dirname(to), { recursive: true });
      await copyFile(path, to);
    }
  }
}

/**
 * Type-checks the program rooted at `roots` (absolute `.ts` paths in
 * `project`) and, when it has no errors, writes its JavaScript to `outDir`
 * (mirroring the project, with the project's own `.js` files beside it and
 * a package.json that makes `.js` an ES module).
 *
 * Returns `{ ok, diagnostics, problem }`: `diagnostics` formatted as
 * `file:line:col: ...`, `problem` a configuration that cannot produce a
 * tool (CommonJS output), else null.
 */
export async function compile(ts, { project, roots, outDir }) {
  project = resolve(project);
  outDir = resolve(outDir);
  const { options, diagnostics: configErrors } = compilerOptions(ts, project, outDir);
  const show = (ds) => ds.map((d) => formatDiagnostic(ts, d, project));
  if (configErrors.some((d) => d.category === ts.DiagnosticCategory.Error)) {
    return { ok: false, diagnostics: show(configErrors), problem: null };
  }
  const program = ts.createProgram({ rootNames: roots, options });
  const problem = notEsm(ts, options, program, project, roots);
  if (problem) return { ok: false, diagnostics: [], problem };
  const found = [...configErrors, ...ts.getPreEmitDiagnostics(program)];
  const failed = (ds) => ds.some((d) => d.category === ts.DiagnosticCategory.Error);
  if (failed(found)) return { ok: false, diagnostics: show(found), problem: null };

  await mkdir(outDir, { recursive: true });
  await copyJavaScript(project, outDir);
  await writeFile(join(outDir, "package.json"), '{ "type": "module" }\n');
  const writes = [];
  const emitted = program.emit(undefined, (fileName, text) => {
    writes.push(mkdir(dirname(fileName), { recursive: true }).then(() => writeFile(fileName, text)));
  });
  await Promise.all(writes);
  const all = [...found, ...emitted.diagnostics];
  return { ok: !emitted.emitSkipped && !failed(all), diagnostics: show(all), problem: null };
}
