// template_text: renders `{{ name }}` templates from variables, escaping
// each value for where it lands (HTML, a URL, a JSON string), and names the
// variables the template used and the ones it lacked. Pure: the same
// template and variables always give the same text, so toolhost replays
// answers from its cache.
//
// Syntax: `{{ path }}` where the path is dotted names and array indices
// (`user.name`, `items.0.title`), optionally followed by filters:
// `{{ name | upper }}`, `| lower`, `| trim`, `| json` (the value as JSON),
// `| raw` (skip the escaping). `{{{{` is a literal `{{`.

import { defineTool, t, InvalidInput } from "./toolhost.js";

const ESCAPES = {
  none: (s) => s,
  html: (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]),
  url: (s) => encodeURIComponent(s),
  json: (s) => JSON.stringify(s).slice(1, -1),
};

const FILTERS = {
  upper: (v) => text(v).toUpperCase(),
  lower: (v) => text(v).toLowerCase(),
  trim: (v) => text(v).trim(),
  json: (v) => JSON.stringify(v),
};

/** A variable's value as text: strings as they are, null as nothing,
 * objects and arrays as JSON. */
function text(value) {
  if (typeof value === "string") return value;
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function lookup(vars, path) {
  let at = vars;
  for (const part of path.split(".")) {
    if (at === null || typeof at !== "object" || !Object.hasOwn(at, part)) return undefined;
    at = at[part];
  }
  return at;
}

const PLACEHOLDER = /\{\{\{\{|\{\{([^{}]*)\}\}/g;
const PATH = /^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*$/;

export function render({ template, vars, escape = "none", missing = "keep" }) {
  const used = new Set();
  const lacking = new Set();
  const out = template.replace(PLACEHOLDER, (whole, inner, offset) => {
    if (inner === undefined) return "{{";
    const [path, ...filters] = inner.split("|").map((s) => s.trim());
    if (!PATH.test(path)) {
      throw new InvalidInput(`template at ${offset}: ${JSON.stringify(whole)} does not name a variable`);
    }
    const unknown = filters.find((f) => f !== "raw" && !(f in FILTERS));
    if (unknown !== undefined) {
      throw new InvalidInput(
        `template at ${offset}: unknown filter ${JSON.stringify(unknown)} (known: ${[...Object.keys(FILTERS), "raw"].join(", ")})`,
      );
    }
    const value = lookup(vars, path);
    if (value === undefined) {
      lacking.add(path);
      return missing === "empty" ? "" : whole;
    }
    used.add(path);
    let result = value;
    for (const f of filters) if (f !== "raw") result = FILTERS[f](result);
    const rendered = text(result);
    return filters.includes("raw") ? rendered : ESCAPES[escape](rendered);
  });
  if (missing === "error" && lacking.size) {
    throw new InvalidInput(`the template needs variables it was not given: ${[...lacking].join(", ")}`);
  }
  return { text: out, used: [...used].sort(), missing: [...lacking].sort() };
}

export default defineTool({
  name: "template_text",
  description:
    "Renders a {{ variable }} template (dotted paths, filters upper, lower, trim, json, raw) " +
    "with values escaped for HTML, URLs or JSON strings, and lists the variables it used and lacked.",
  effect: "pure",
  input: t.object({
    template: t.string().describe("The text, with {{ path | filter }} placeholders."),
    vars: t.record(t.any()).describe("The variables, by name."),
    escape: t.optional(t.enum(["none", "html", "url", "json"]))
      .describe("How each value is escaped (default none); the raw filter skips it."),
    missing: t.optional(t.enum(["keep", "empty", "error"]))
      .describe("What a placeholder without a variable becomes: kept as written (default), nothing, or an error."),
  }),
  output: t.object({
    text: t.string(),
    used: t.array(t.string()).describe("The variables the template used."),
    missing: t.array(t.string()).describe("The variables the template named but was not given."),
  }),
  run: (input) => render({ ...input, escape: input.escape ?? "none", missing: input.missing ?? "keep" }),
});
