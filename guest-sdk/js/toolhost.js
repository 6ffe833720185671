// toolhost-sdk for JavaScript: write a sandboxed tool as one function.
//
// A toolhost tool is a WebAssembly component that exports the
// `toolhost:tool/tool@0.2.0` world (`reconciling-tool@0.2.0` when it can
// tell whether a call in doubt took effect). ComponentizeJS builds it from
// an ES module; this file (copied into each project, no dependencies)
// turns one declared function into that module's exports:
//
//     import { defineTool, t } from "./toolhost.js";
//
//     export default defineTool({
//       name: "greet",
//       description: "Greets someone.",
//       effect: "pure",
//       input: t.object({ name: t.string().describe("Who to greet.") }),
//       output: t.object({ greeting: t.string() }),
//       run: (input, ctx) => ({ greeting: `Hello, ${input.name}!` }),
//     });
//
// - `describe` reports the name, description, version, effect and the JSON
//   Schemas (2020-12) of the input and output, built with `t`;
// - `call` parses the input, checks it against the input schema (a mismatch
//   is `invalid_input` naming the path: `items[0].price: expected a number,
//   got a string`), runs `run` (sync or async) and serialises its result;
// - `InvalidInput`, `Failed` and `Transient` become the host's error kinds;
//   any other thrown value is `tool_failed` with `Name: message` (never a
//   trap), so a bug shows the model what went wrong;
// - `reconcile`, when given, answers for a call whose process died before
//   its outcome was recorded: `committed(output)`, `NOT_DONE` or
//   `unknown(reason)`.
//
// Nothing outside the sandbox is reachable unless the tool's policy grants
// it: files through `files` in granted directories, HTTP through the global
// `fetch` (StarlingMonkey's, over wasi:http) to granted hosts. `build.mjs`
// builds the component; `invoke` runs the whole call path in Node for unit
// tests. The same contract as the Rust and Python SDKs (guest-sdk/).

export const PURE = "pure";
export const READ_ONLY = "read-only";
export const IDEMPOTENT = "idempotent";
export const SIDE_EFFECTING = "side-effecting";
const EFFECTS = [PURE, READ_ONLY, IDEMPOTENT, SIDE_EFFECTING];

/** The prefix of a `Failed` message the host reports as `capability_denied`
 * (the WIT world has no case of its own for it). */
export const CAPABILITY_DENIED_PREFIX = "capability_denied: ";

// ---------------------------------------------------------------- errors

/** Base of the errors a tool throws on purpose. */
export class ToolError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The caller's fault: not retried, shown to the model. */
export class InvalidInput extends ToolError {}

/** Ran and failed: not retried. */
export class Failed extends ToolError {}

/** Worth retrying later (a remote service is busy). */
export class Transient extends ToolError {}

/** The sandbox refused an access (a file outside every grant). */
export class CapabilityDenied extends Failed {
  constructor(what) {
    super(`${CAPABILITY_DENIED_PREFIX}${what}`);
  }
}

/** SpiderMonkey's out-of-memory, as the engine throws it: a bare string. */
const ENGINE_OUT_OF_MEMORY = "out of memory";

/** The engine ran out of memory: not the tool's failure but the sandbox's
 * memory limit. In a component the call traps, so the host reports
 * `memory_limit` (it reports the limit only for a call that stops). */
class OutOfMemory extends Failed {
  constructor() {
    super("the JavaScript engine ran out of memory");
  }
}

/** Any thrown value as one of the three kinds the host knows. */
function failure(e) {
  if (e instanceof ToolError) return e;
  if (e === ENGINE_OUT_OF_MEMORY) return new OutOfMemory();
  if (e instanceof Error || (e && typeof e === "object" && "message" in e)) {
    const code = e.code;
    if (code === "EACCES" || code === "EPERM" || code === "ENOTCAPABLE") {
      return new CapabilityDenied(e.message);
    }
    return new Failed(`${e.name || "Error"}: ${e.message}`);
  }
  return new Failed(`thrown value: ${show(e)}`);
}

function show(value) {
  try {
    const text = JSON.stringify(value);
    if (text !== undefined) return text;
  } catch {
    // A cycle or a BigInt: fall back to String.
  }
  return String(value);
}

// ---------------------------------------------------------------- schemas

/** Every JSON type: the `type` of a value that may be anything. */
export const ANY_TYPE = ["null", "boolean", "object", "array", "number", "string"];

/** A JSON value that does not fit the declared schema; `path` says where. */
export class DecodeError extends Error {
  constructor(path, message) {
    super(path ? `${path}: ${message}` : message);
    this.name = "DecodeError";
    this.path = path;
  }
}

function kind(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  switch (typeof value) {
    case "boolean":
      return "a boolean";
    case "number":
      return Number.isInteger(value) ? "an integer" : "a number";
    case "string":
      return "a string";
    case "object":
      return "an object";
    default:
      return typeof value;
  }
}

function at(path, key) {
  if (typeof key === "number") return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

/** A schema: its JSON Schema and a decoder of parsed values. Immutable:
 * `.describe(text)` returns a new one. */
export class Schema {
  constructor(json, decode, { optional = false } = {}) {
    this.json = json;
    this.decodeAt = decode;
    this.optional = optional;
    Object.freeze(this);
  }

  /** The same schema with a `description`. */
  describe(text) {
    return new Schema({ ...this.json, description: text }, this.decodeAt, {
      optional: this.optional,
    });
  }

  /** `value` checked against the schema (a copy holding only declared
   * properties); throws DecodeError naming the first mismatch. */
  decode(value, path = "") {
    return this.decodeAt(value, path);
  }

  /** The schema as a root document: 2020-12 `$schema` first. */
  toJSON() {
    return { $schema: "https://json-schema.org/draft/2020-12/schema", ...this.json };
  }
}

function bounds(json, options, names) {
  for (const name of names) {
    if (options[name] !== undefined) json[name] = options[name];
  }
  return json;
}

function checkBounds(value, options, path, measure, what) {
  const [lo, hi] = measure;
  if (options[lo] !== undefined && what(value) < options[lo]) {
    throw new DecodeError(path, `expected at least ${options[lo]}, got ${what(value)}`);
  }
  if (options[hi] !== undefined && what(value) > options[hi]) {
    throw new DecodeError(path, `expected at most ${options[hi]}, got ${what(value)}`);
  }
}

function scalar(type, test, expected, options, measure, what) {
  const json = bounds({ type }, options, measure);
  return new Schema(json, (value, path) => {
    if (!test(value)) throw new DecodeError(path, `expected ${expected}, got ${kind(value)}`);
    checkBounds(value, options, path, measure, what);
    return value;
  });
}

const identity = (v) => v;
const length = (v) => [...v].length;
const count = (v) => v.length;

function jsonType(value) {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "number";
  return typeof value;
}

/** The schema builder. */
export const t = {
  /** A string; `{minLength, maxLength}` (counted in code points). */
  string(options = {}) {
    return scalar("string", (v) => typeof v === "string", "a string", options,
      ["minLength", "maxLength"], length);
  },
  /** An integer (a JSON number without a fraction); `{minimum, maximum}`. */
  integer(options = {}) {
    return scalar("integer", (v) => Number.isInteger(v), "an integer", options,
      ["minimum", "maximum"], identity);
  },
  /** Any JSON number; `{minimum, maximum}`. */
  number(options = {}) {
    return scalar("number", (v) => typeof v === "number", "a number", options,
      ["minimum", "maximum"], identity);
  },
  boolean() {
    return scalar("boolean", (v) => typeof v === "boolean", "a boolean", {}, [], identity);
  },
  null() {
    return scalar("null", (v) => v === null, "null", {}, [], identity);
  },
  /** Any JSON value: its `type` lists every JSON type. */
  any() {
    return new Schema({ type: [...ANY_TYPE] }, identity);
  },
  /** One of the given JSON values (typed when they share one type). */
  enum(values) {
    if (!Array.isArray(values) || values.length === 0) {
      throw new TypeError("t.enum takes a non-empty array of values");
    }
    const types = new Set(values.map(jsonType));
    const json = { enum: [...values] };
    if (types.size === 1) json.type = [...types][0];
    const allowed = JSON.stringify(values);
    return new Schema(json, (value, path) => {
      if (!values.some((v) => v === value)) {
        throw new DecodeError(path, `expected one of ${allowed}, got ${show(value)}`);
      }
      return value;
    });
  },
  /** An array of `item`; `{minItems, maxItems}`. */
  array(item, options = {}) {
    schemaArg(item, "t.array");
    const json = bounds({ type: "array", items: item.json }, options, ["minItems", "maxItems"]);
    return new Schema(json, (value, path) => {
      if (!Array.isArray(value)) {
        throw new DecodeError(path, `expected an array, got ${kind(value)}`);
      }
      checkBounds(value, options, path, ["minItems", "maxItems"], count);
      return value.map((v, i) => item.decodeAt(v, at(path, i)));
    });
  },
  /** An object with string keys and values of `value`. */
  record(value) {
    schemaArg(value, "t.record");
    return new Schema({ type: "object", additionalProperties: value.json }, (v, path) => {
      if (!isObject(v)) throw new DecodeError(path, `expected an object, got ${kind(v)}`);
      const out = {};
      for (const [k, item] of Object.entries(v)) out[k] = value.decodeAt(item, at(path, k));
      return out;
    });
  },
  /** An object of the given properties, all required except those marked
   * `t.optional(...)` or named in `{optional: [...]}`; `{description}`.
   * Other properties are allowed and dropped from the decoded value. */
  object(properties, options = {}) {
    const optional = new Set(options.optional || []);
    const entries = Object.entries(properties);
    for (const [name, prop] of entries) schemaArg(prop, `t.object property ${name}`);
    for (const name of optional) {
      if (!(name in properties)) throw new TypeError(`optional names no property: ${name}`);
    }
    const required = entries
      .filter(([name, prop]) => !prop.optional && !optional.has(name))
      .map(([name]) => name);
    const json = { type: "object", properties: {} };
    for (const [name, prop] of entries) json.properties[name] = prop.json;
    if (required.length) json.required = required;
    if (options.description) json.description = options.description;
    return new Schema(json, (value, path) => {
      if (!isObject(value)) throw new DecodeError(path, `expected an object, got ${kind(value)}`);
      const out = {};
      for (const [name, prop] of entries) {
        if (Object.hasOwn(value, name)) {
          out[name] = prop.decodeAt(value[name], at(path, name));
        } else if (required.includes(name)) {
          throw new DecodeError(at(path, name), "missing field");
        }
      }
      return out;
    });
  },
  /** A property that may be absent or null. */
  optional(schema) {
    schemaArg(schema, "t.optional");
    const json = { anyOf: [schema.json, { type: "null" }] };
    return new Schema(json, (value, path) => (value === null ? null : schema.decodeAt(value, path)),
      { optional: true });
  },
  /** A value matching any of the schemas (the first that fits decodes it). */
  union(...schemas) {
    schemas.forEach((s) => schemaArg(s, "t.union"));
    return new Schema({ anyOf: schemas.map((s) => s.json) }, (value, path) => {
      const errors = [];
      for (const s of schemas) {
        try {
          return s.decodeAt(value, path);
        } catch (e) {
          if (!(e instanceof DecodeError)) throw e;
          errors.push(e.message);
        }
      }
      throw new DecodeError(path, `matches none of: ${errors.join("; ")}`);
    });
  },
};

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function schemaArg(s, where) {
  if (!(s instanceof Schema)) {
    throw new TypeError(`${where} takes a schema built with t (t.string(), t.object({...}), ...)`);
  }
}

// ---------------------------------------------------------------- blake3

// BLAKE3 in plain JavaScript, for the forwarded key only: the inputs are a
// few hundred bytes once per request, so speed does not matter, a correct
// tree does. A port of guest-sdk/python/toolhost_sdk/_blake3.py (checked
// against the reference crate); the unit tests check this one against
// known answers and against that implementation.

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const BLOCK_LEN = 64;
const CHUNK_LEN = 1024;
const CHUNK_START = 1 << 0;
const CHUNK_END = 1 << 1;
const PARENT = 1 << 2;
const ROOT = 1 << 3;
const DERIVE_KEY_CONTEXT = 1 << 5;
const DERIVE_KEY_MATERIAL = 1 << 6;

function g(s, a, b, c, d, mx, my) {
  s[a] = (s[a] + s[b] + mx) >>> 0;
  s[d] = rotr(s[d] ^ s[a], 16);
  s[c] = (s[c] + s[d]) >>> 0;
  s[b] = rotr(s[b] ^ s[c], 12);
  s[a] = (s[a] + s[b] + my) >>> 0;
  s[d] = rotr(s[d] ^ s[a], 8);
  s[c] = (s[c] + s[d]) >>> 0;
  s[b] = rotr(s[b] ^ s[c], 7);
}

function rotr(x, n) {
  return ((x >>> n) | (x << (32 - n))) >>> 0;
}

/** The compression function: 16 output words. */
function compress(cv, block, counter, blockLen, flags) {
  const s = [...cv, IV[0], IV[1], IV[2], IV[3],
    counter % 0x100000000, Math.floor(counter / 0x100000000), blockLen, flags];
  let m = [...block];
  for (let round = 0; round < 7; round++) {
    g(s, 0, 4, 8, 12, m[0], m[1]);
    g(s, 1, 5, 9, 13, m[2], m[3]);
    g(s, 2, 6, 10, 14, m[4], m[5]);
    g(s, 3, 7, 11, 15, m[6], m[7]);
    g(s, 0, 5, 10, 15, m[8], m[9]);
    g(s, 1, 6, 11, 12, m[10], m[11]);
    g(s, 2, 7, 8, 13, m[12], m[13]);
    g(s, 3, 4, 9, 14, m[14], m[15]);
    if (round < 6) m = PERMUTATION.map((i) => m[i]);
  }
  for (let i = 0; i < 8; i++) {
    s[i] = (s[i] ^ s[i + 8]) >>> 0;
    s[i + 8] = (s[i + 8] ^ cv[i]) >>> 0;
  }
  return s;
}

/** Up to 64 bytes as 16 little-endian words, zero-padded. */
function words(bytes) {
  const padded = new Uint8Array(BLOCK_LEN);
  padded.set(bytes);
  const out = [];
  for (let i = 0; i < BLOCK_LEN; i += 4) {
    out.push((padded[i] | (padded[i + 1] << 8) | (padded[i + 2] << 16) | (padded[i + 3] << 24)) >>> 0);
  }
  return out;
}

/** A node not yet compressed: a chunk's last block or a parent. */
function node(cv, block, counter, blockLen, flags) {
  return {
    chainingValue: () => compress(cv, block, counter, blockLen, flags).slice(0, 8),
    rootBytes(length) {
      const out = new Uint8Array(Math.ceil(length / 64) * 64);
      for (let n = 0; n * 64 < length; n++) {
        const w = compress(cv, block, n, blockLen, flags | ROOT);
        for (let i = 0; i < 16; i++) {
          for (let b = 0; b < 4; b++) out[n * 64 + i * 4 + b] = (w[i] >>> (8 * b)) & 0xff;
        }
      }
      return out.slice(0, length);
    },
  };
}

function chunkOutput(key, chunk, counter, flags) {
  let cv = [...key];
  const blocks = [];
  for (let i = 0; i < chunk.length; i += BLOCK_LEN) blocks.push(chunk.subarray(i, i + BLOCK_LEN));
  if (blocks.length === 0) blocks.push(new Uint8Array(0));
  for (let i = 0; i < blocks.length - 1; i++) {
    const start = i === 0 ? CHUNK_START : 0;
    cv = compress(cv, words(blocks[i]), counter, BLOCK_LEN, flags | start).slice(0, 8);
  }
  const start = blocks.length === 1 ? CHUNK_START : 0;
  const last = blocks[blocks.length - 1];
  return node(cv, words(last), counter, last.length, flags | start | CHUNK_END);
}

function parentOutput(left, right, key, flags) {
  return node([...key], [...left, ...right], 0, BLOCK_LEN, flags | PARENT);
}

function hash(data, key, flags, length = 32) {
  const chunks = [];
  for (let i = 0; i < data.length; i += CHUNK_LEN) chunks.push(data.subarray(i, i + CHUNK_LEN));
  if (chunks.length === 0) chunks.push(new Uint8Array(0));
  const stack = [];
  for (let counter = 0; counter < chunks.length - 1; counter++) {
    let cv = chunkOutput(key, chunks[counter], counter, flags).chainingValue();
    // Merge completed subtrees: one per trailing zero bit of the count.
    for (let total = counter + 1; total % 2 === 0; total /= 2) {
      cv = parentOutput(stack.pop(), cv, key, flags).chainingValue();
    }
    stack.push(cv);
  }
  let output = chunkOutput(key, chunks[chunks.length - 1], chunks.length - 1, flags);
  while (stack.length) {
    output = parentOutput(stack.pop(), output.chainingValue(), key, flags);
  }
  return output.rootBytes(length);
}

const utf8 = (text) => new TextEncoder().encode(text);

/** The 32-byte BLAKE3 hash of `data` (bytes or a string, as UTF-8). */
export function blake3(data) {
  return hash(typeof data === "string" ? utf8(data) : data, IV, 0);
}

/** BLAKE3's derive-key mode: 32 bytes for `material` under `context`. */
export function deriveKey(context, material) {
  const contextKey = hash(utf8(context), IV, DERIVE_KEY_CONTEXT);
  const key = words(contextKey).slice(0, 8);
  return hash(typeof material === "string" ? utf8(material) : material, key, DERIVE_KEY_MATERIAL);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------- forwarded key

// The value of the `Idempotency-Key` header the host adds to an idempotent
// or side-effecting tool's mutating requests (design.md, "Exactly-once
// past the sandbox wall"): the host's derivation (guest-sdk/rust/src/
// forwarded.rs), 32 hex characters of blake3 in derive-key mode over four
// length-prefixed parts: the call's key, the method in upper case, the
// scheme and authority in lower case, and the path (`/` when empty).

export const FORWARDED_KEY_CONTEXT = "toolhost idempotency-key header v1";
const MUTATING = ["POST", "PUT", "PATCH", "DELETE"];

// ASCII case only, as the host's `to_ascii_uppercase`.
const upper = (s) => s.replace(/[a-z]+/g, (m) => m.toUpperCase());
const lower = (s) => s.replace(/[A-Z]+/g, (m) => m.toLowerCase());

/** An absolute http(s) URL's origin (`scheme://authority` without user
 * info) and path (without query or fragment), or null. */
export function splitUrl(url) {
  const sep = url.indexOf("://");
  if (sep === -1) return null;
  const scheme = url.slice(0, sep);
  if (lower(scheme) !== "http" && lower(scheme) !== "https") return null;
  const rest = url.slice(sep + 3);
  const end = firstOf(rest, "/?#");
  const hostPart = rest.slice(0, end);
  const authority = hostPart.slice(hostPart.lastIndexOf("@") + 1);
  if (!authority) return null;
  const tail = rest.slice(end);
  return [`${scheme}://${authority}`, tail.slice(0, firstOf(tail, "?#"))];
}

function firstOf(text, marks) {
  let end = text.length;
  for (const mark of marks) {
    const i = text.indexOf(mark);
    if (i !== -1 && i < end) end = i;
  }
  return end;
}

/** The header value for a `method` request to `url` in the call whose key
 * is `callKey`; null for a method that carries none or a URL that is not
 * absolute http(s). */
export function forwardedKey(callKey, method, url) {
  if (!MUTATING.includes(upper(method))) return null;
  const parts = splitUrl(url);
  if (parts === null) return null;
  const [origin, path] = parts;
  const encoded = [callKey, upper(method), lower(origin), path || "/"].map(utf8);
  const material = new Uint8Array(encoded.reduce((n, p) => n + 8 + p.length, 0));
  let at = 0;
  for (const part of encoded) {
    new DataView(material.buffer).setBigUint64(at, BigInt(part.length), true);
    material.set(part, at + 8);
    at += 8 + part.length;
  }
  return hex(deriveKey(FORWARDED_KEY_CONTEXT, material)).slice(0, 32);
}

// ---------------------------------------------------------------- context

/** What the host tells a call about itself. */
function context({ idempotencyKey, attempt, deadlineMs }) {
  return Object.freeze({
    /** Hex; the same on every attempt of this call's key. */
    idempotencyKey,
    /** 1 on the first execution of this key. */
    attempt,
    /** Wall-clock budget left for this call, in milliseconds. */
    deadlineMs: Number(deadlineMs),
    /** The `Idempotency-Key` value the host adds to a `method` request to
     * `url` in this call (idempotent and side-effecting tools,
     * POST/PUT/PATCH/DELETE, unless the tool set the header); null for a
     * method that carries none or a URL that is not absolute http(s).
     * `reconcile` looks its effect up by it. */
    forwardedKey: (method, url) => forwardedKey(idempotencyKey, method, url),
  });
}

/** A context for unit tests run natively: a fixed key, attempt 1, 10 s;
 * `overrides` replaces any of them. */
export function testContext(overrides = {}) {
  return context({ idempotencyKey: "00".repeat(32), attempt: 1, deadlineMs: 10_000, ...overrides });
}

// ---------------------------------------------------------------- reconcile answers

const COMMITTED = Symbol("committed");
const UNKNOWN = Symbol("unknown");

/** reconcile's answer: the effect happened; `output` is what `run` would
 * have returned. */
export function committed(output) {
  return Object.freeze({ [COMMITTED]: true, output });
}

/** reconcile's answer: the effect did not happen; the host runs the call again. */
export const NOT_DONE = Object.freeze({ toString: () => "NOT_DONE" });

/** reconcile's answer: the remote cannot tell (yet); `reason` says why. */
export function unknown(reason) {
  return Object.freeze({ [UNKNOWN]: true, reason: String(reason) });
}

// ---------------------------------------------------------------- files

// ComponentizeJS's engine has no file API of its own (and stubs
// wasi:filesystem out unless the world imports it), so `build.mjs` builds
// against a world that adds `wasi:filesystem/preopens` and hands those
// bindings to `bindWasi` from the module it generates. In Node (unit
// tests) the same calls go to `node:fs`.

let preopens = null;

/** Called by the module build.mjs generates; not for tools. */
export function bindWasi(bindings) {
  preopens = bindings.preopens;
}

function nodeFs() {
  const fs = globalThis.process?.getBuiltinModule?.("node:fs");
  if (!fs) throw new Failed("no file system: build with build.mjs, or run under Node 20.16+");
  return fs;
}

// wasi:filesystem error codes that mean "the sandbox said no".
const DENIED = new Set(["access", "not-permitted", "read-only"]);

function wasiError(path, e) {
  const code = typeof e === "string" ? e : e && typeof e.payload === "string" ? e.payload : null;
  if (code === null) return failure(e);
  if (DENIED.has(code)) return new CapabilityDenied(`${path}: ${code}`);
  return new Failed(`${path}: ${code}`);
}

/** The granted directory holding absolute `path`, and the rest of it. */
function resolve(path) {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new Failed(`${show(path)}: give an absolute path inside a granted directory`);
  }
  let best = null;
  for (const [descriptor, dir] of preopens.getDirectories()) {
    const base = dir.replace(/\/+$/, "");
    const inside = path === base || path.startsWith(`${base}/`) || base === "";
    if (inside && (best === null || base.length > best.base.length)) {
      best = { descriptor, base };
    }
  }
  if (best === null) {
    throw new CapabilityDenied(`${path} is outside every granted directory`);
  }
  return [best.descriptor, path.slice(best.base.length).replace(/^\/+/, "") || "."];
}

function withFile(path, openFlags, flags, use) {
  const [dir, rel] = resolve(path);
  let file;
  try {
    file = dir.openAt({ symlinkFollow: true }, rel, openFlags, flags);
  } catch (e) {
    throw wasiError(path, e);
  }
  try {
    return use(file);
  } catch (e) {
    throw e instanceof ToolError ? e : wasiError(path, e);
  } finally {
    file[Symbol.dispose]?.();
  }
}

function writeAll(stream, bytes) {
  try {
    // blocking-write-and-flush takes at most 4096 bytes at a time.
    for (let at = 0; at < bytes.length; at += 4096) {
      stream.blockingWriteAndFlush(bytes.subarray(at, at + 4096));
    }
  } finally {
    stream[Symbol.dispose]?.();
  }
}

/** Files in the directories the tool's policy grants (`dirs` in
 * toolhost.toml), by absolute path as granted (`/data/log.txt`). A path
 * outside every grant, or a write to a read-only one, is
 * `capability_denied`; other failures are `tool_failed` naming the path
 * and the WASI error code. */
export const files = {
  /** The file's text (UTF-8). */
  readText(path) {
    if (!preopens) return nodeFs().readFileSync(path, "utf8");
    return withFile(path, {}, { read: true }, (file) => {
      const chunks = [];
      let offset = 0n;
      for (;;) {
        const [bytes, end] = file.read(65536n, offset);
        chunks.push(bytes);
        offset += BigInt(bytes.length);
        if (end || bytes.length === 0) break;
      }
      const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        all.set(c, at);
        at += c.length;
      }
      return new TextDecoder().decode(all);
    });
  },
  /** Replaces the file's content with `text`, creating it if needed. */
  writeText(path, text) {
    if (!preopens) return nodeFs().writeFileSync(path, text);
    withFile(path, { create: true, truncate: true }, { write: true }, (file) => {
      writeAll(file.writeViaStream(0n), utf8(text));
    });
  },
  /** Appends `text` to the file, creating it if needed. */
  appendText(path, text) {
    if (!preopens) return nodeFs().appendFileSync(path, text);
    withFile(path, { create: true }, { write: true }, (file) => {
      writeAll(file.appendViaStream(), utf8(text));
    });
  },
  /** Whether a file or directory exists at `path`. */
  exists(path) {
    if (!preopens) return nodeFs().existsSync(path);
    const [dir, rel] = resolve(path);
    try {
      dir.statAt({ symlinkFollow: true }, rel);
      return true;
    } catch (e) {
      const error = wasiError(path, e);
      if (error instanceof CapabilityDenied) throw error;
      return false;
    }
  },
};

// ---------------------------------------------------------------- the call path

function parse(tool, input) {
  let value;
  try {
    value = JSON.parse(input);
  } catch (e) {
    throw new InvalidInput(`input is not JSON: ${e.message}`);
  }
  try {
    return tool.input.decode(value);
  } catch (e) {
    if (e instanceof DecodeError) throw new InvalidInput(e.message);
    throw e;
  }
}

function serialise(value) {
  const text = JSON.stringify(value === undefined ? null : value, (key, v) => {
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new Failed(`the output holds ${v}, which JSON cannot carry`);
    }
    return v;
  });
  return text;
}

async function runCall(tool, input, ctx) {
  try {
    return serialise(await tool.run(parse(tool, input), ctx));
  } catch (e) {
    throw failure(e);
  }
}

async function runReconcile(tool, input, ctx) {
  if (!tool.reconcile) throw new TypeError(`${tool.name} has no reconcile`);
  try {
    const answer = await tool.reconcile(parse(tool, input), ctx);
    if (answer && answer[COMMITTED]) return ["committed", serialise(answer.output)];
    if (answer === NOT_DONE) return ["not-done", null];
    if (answer && answer[UNKNOWN]) return ["unknown", answer.reason];
    throw new TypeError(
      `reconcile returned ${show(answer)}; return committed(output), NOT_DONE or unknown(reason)`,
    );
  } catch (e) {
    throw failure(e);
  }
}

// The author's declaration behind a tool's exports.
const DECLARED = Symbol("declared");

function declared(tool) {
  const d = tool && tool[DECLARED];
  if (!d) throw new TypeError("not a tool: pass what defineTool returned");
  return d;
}

/** Runs the whole call path natively (parse, check, run, serialise): the
 * output JSON text, or a rejection with the tool's error (InvalidInput,
 * Failed or Transient); for unit tests. */
export function invoke(tool, input, ctx = testContext()) {
  return runCall(declared(tool), input, ctx);
}

/** Runs `reconcile` natively: `["committed", outputJson]`,
 * `["not-done", null]` or `["unknown", reason]`. */
export function invokeReconcile(tool, input, ctx = testContext()) {
  return runReconcile(declared(tool), input, ctx);
}

// ComponentizeJS's conventions for the exports (checked against 0.23.0):
// records are objects with camelCase fields, enums their WIT names as
// strings, an absent option `undefined`, a u64 a BigInt; a `result` export
// returns its `ok` value (or a promise of it, whose event loop the engine
// runs to the end) and throws its `err` value as the variant itself,
// `{tag: "failed", val: "..."}`. Any other thrown value traps the
// component, so nothing else escapes but the engine's own out-of-memory,
// on purpose: the trap makes the host report `memory_limit`.

function witError(e) {
  // Anything thrown that is not a tool-error variant traps the component.
  if (e instanceof OutOfMemory) return ENGINE_OUT_OF_MEMORY;
  const tag = e instanceof InvalidInput ? "invalid-input"
    : e instanceof Transient ? "transient" : "failed";
  return { tag, val: e.message };
}

function witContext(ctx) {
  return context({
    idempotencyKey: ctx.idempotencyKey,
    attempt: ctx.attempt,
    deadlineMs: ctx.deadlineMs,
  });
}

/** Declares a tool; `export default` what it returns from the tool's
 * module. `effect` is one of "pure", "read-only", "idempotent",
 * "side-effecting"; `input` and `output` are schemas built with `t`;
 * `run(input, ctx)` returns the output (or a promise of it);
 * `reconcile(input, ctx)`, when given, returns `committed(output)`,
 * `NOT_DONE` or `unknown(reason)`. A bad declaration throws here, so the
 * build fails rather than a call. */
export function defineTool(spec) {
  const { name, description, version = "0.1.0", effect, input, output, run, reconcile } = spec;
  if (typeof name !== "string" || !/^[a-z0-9_-]{1,64}$/.test(name)) {
    throw new TypeError(`name must be 1-64 characters of a-z, 0-9, _ or -, got ${show(name)}`);
  }
  if (typeof description !== "string") throw new TypeError("description must be a string");
  if (!EFFECTS.includes(effect)) {
    throw new TypeError(`effect ${show(effect)} is not one of ${EFFECTS.join(", ")}`);
  }
  schemaArg(input, "input");
  if (output !== undefined) schemaArg(output, "output");
  if (typeof run !== "function") throw new TypeError("run must be a function (input, ctx) => output");
  if (reconcile !== undefined && typeof reconcile !== "function") {
    throw new TypeError("reconcile must be a function (input, ctx) => answer");
  }
  const decl = Object.freeze({ name, description, version, effect, input, output, run, reconcile });
  const inputSchema = JSON.stringify(input);
  const outputSchema = output === undefined ? undefined : JSON.stringify(output);
  const tool = { name, effect, [DECLARED]: decl };
  tool.describe = () => ({ name, description, version, inputSchema, outputSchema, effect });
  tool.call = (ctx, text) =>
    runCall(decl, text, witContext(ctx)).catch((e) => {
      throw witError(e);
    });
  if (reconcile) {
    tool.reconcile = (ctx, text) =>
      runReconcile(decl, text, witContext(ctx)).then(
        ([answer, value]) => (answer === "not-done" ? { tag: answer } : { tag: answer, val: value }),
        (e) => {
          throw witError(e);
        },
      );
  }
  return Object.freeze(tool);
}
