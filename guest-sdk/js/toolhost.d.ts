// Type declarations of toolhost-sdk for JavaScript (toolhost.js), for tools
// written in TypeScript. Hand-written beside the module they describe:
// `import { defineTool, t } from "./toolhost.js"` in a `.ts` file finds
// them, and `build.mjs` type-checks the tool against them before it builds.
//
// The point is that a schema is declared once and typed from there: the
// type of `run`'s `input` is inferred from the `t` builder that also makes
// the JSON Schema the host checks calls against, so `input.nmae` is a
// build error, not a `tool_failed` in production.
//
//     const Input = t.object({ name: t.string(), times: t.optional(t.integer()) });
//     type Input = Infer<typeof Input>;   // { name: string; times?: number | null }
//
// `test/types.test.mjs` checks that every export of toolhost.js is declared
// here and that well- and ill-typed tools pass and fail as they should.

// ---------------------------------------------------------------- JSON

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON scalar: what `t.enum` compares with `===`. */
export type JsonScalar = null | boolean | number | string;

// ---------------------------------------------------------------- effects

export type Effect = "pure" | "read-only" | "idempotent" | "side-effecting";

export declare const PURE: "pure";
export declare const READ_ONLY: "read-only";
export declare const IDEMPOTENT: "idempotent";
export declare const SIDE_EFFECTING: "side-effecting";

/** The prefix of a `Failed` message the host reports as `capability_denied`. */
export declare const CAPABILITY_DENIED_PREFIX: "capability_denied: ";

// ---------------------------------------------------------------- errors

/** Base of the errors a tool throws on purpose. */
export declare class ToolError extends Error {
  constructor(message: string);
}

/** The caller's fault (`invalid_input`): not retried, shown to the model. */
export declare class InvalidInput extends ToolError {}

/** Ran and failed (`tool_failed`): not retried. */
export declare class Failed extends ToolError {}

/** Worth retrying later (`tool_transient`): a remote service is busy. */
export declare class Transient extends ToolError {}

/** The sandbox refused an access (`capability_denied`). */
export declare class CapabilityDenied extends Failed {
  constructor(what: string);
}

// ---------------------------------------------------------------- schemas

/** Every JSON type: the `type` of `t.any()`. */
export declare const ANY_TYPE: readonly ["null", "boolean", "object", "array", "number", "string"];

/** A JSON value that does not fit the declared schema; `path` says where. */
export declare class DecodeError extends Error {
  constructor(path: string, message: string);
  readonly path: string;
}

declare const decoded: unique symbol;

/** A schema: its JSON Schema and a decoder of parsed values, typed by what
 * it decodes to (`T`) and whether an object may leave it out (`Optional`). */
export declare class Schema<T = unknown, Optional extends boolean = boolean> {
  private constructor();
  /** The JSON Schema (without `$schema`). */
  readonly json: { readonly [keyword: string]: unknown };
  /** Whether `t.object` leaves this property out of `required`. */
  readonly optional: Optional;
  /** The type the schema decodes to; never set, only for `Infer`. */
  readonly [decoded]?: T;
  /** The same schema with a `description`. */
  describe(text: string): Schema<T, Optional>;
  /** `value` checked against the schema; throws DecodeError at the first
   * mismatch. */
  decode(value: unknown, path?: string): T;
  /** The schema as a root document: 2020-12 `$schema` first. */
  toJSON(): { [keyword: string]: unknown };
}

/** Any schema built with `t`. */
export type AnySchema = Schema<any, boolean>;

/** The type a schema decodes to: `Infer<typeof Input>`. */
export type Infer<S> = S extends Schema<infer T, boolean> ? T : never;

/** A property that `t.optional` marks (may be absent or null). */
type OptionalSchema = Schema<any, true>;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type RequiredKeys<P, Named extends PropertyKey> = {
  [K in keyof P]: P[K] extends OptionalSchema ? never : K extends Named ? never : K;
}[keyof P];

/** The object `t.object(properties, {optional})` decodes to: the required
 * properties, then the optional ones (`?`). */
export type ObjectOf<P extends Record<string, AnySchema>, Named extends PropertyKey = never> = Simplify<
  { [K in RequiredKeys<P, Named>]: Infer<P[K]> } & {
    [K in Exclude<keyof P, RequiredKeys<P, Named>>]?: Infer<P[K]>;
  }
>;

export interface StringOptions {
  /** In code points. */
  minLength?: number;
  maxLength?: number;
}

export interface NumberOptions {
  minimum?: number;
  maximum?: number;
}

export interface ArrayOptions {
  minItems?: number;
  maxItems?: number;
}

export interface ObjectOptions<Named extends string> {
  /** Properties that may be absent (their schemas do not accept null). */
  optional?: readonly Named[];
  description?: string;
}

/** The schema builder. */
export declare const t: {
  /** A string; `{minLength, maxLength}` (counted in code points). */
  string(options?: StringOptions): Schema<string, false>;
  /** An integer (a JSON number without a fraction); `{minimum, maximum}`. */
  integer(options?: NumberOptions): Schema<number, false>;
  /** Any JSON number; `{minimum, maximum}`. */
  number(options?: NumberOptions): Schema<number, false>;
  boolean(): Schema<boolean, false>;
  null(): Schema<null, false>;
  /** Any JSON value. */
  any(): Schema<JsonValue, false>;
  /** One of the given values: `t.enum(["red", "blue"])` is `"red" | "blue"`. */
  enum<const V extends readonly [JsonScalar, ...JsonScalar[]]>(values: V): Schema<V[number], false>;
  /** An array of `item`; `{minItems, maxItems}`. */
  array<S extends AnySchema>(item: S, options?: ArrayOptions): Schema<Infer<S>[], false>;
  /** An object with string keys and values of `value`. */
  record<S extends AnySchema>(value: S): Schema<{ [key: string]: Infer<S> }, false>;
  /** An object of the given properties, all required except those marked
   * `t.optional(...)` or named in `{optional: [...]}`. Other properties are
   * allowed and dropped from the decoded value. */
  object<P extends Record<string, AnySchema>, const Named extends Extract<keyof P, string> = never>(
    properties: P,
    options?: ObjectOptions<Named>,
  ): Schema<ObjectOf<P, Named>, false>;
  /** A property that may be absent or null. */
  optional<S extends AnySchema>(schema: S): Schema<Infer<S> | null, true>;
  /** A value matching any of the schemas (the first that fits decodes it). */
  union<S extends [AnySchema, ...AnySchema[]]>(...schemas: S): Schema<Infer<S[number]>, false>;
};

// ---------------------------------------------------------------- blake3 and the forwarded key

/** The 32-byte BLAKE3 hash of `data` (a string is hashed as UTF-8). */
export declare function blake3(data: string | Uint8Array): Uint8Array;
/** BLAKE3's derive-key mode: 32 bytes for `material` under `context`. */
export declare function deriveKey(context: string, material: string | Uint8Array): Uint8Array;
export declare function hex(bytes: Uint8Array): string;

export declare const FORWARDED_KEY_CONTEXT: "toolhost idempotency-key header v1";
/** An absolute http(s) URL's origin and path, or null. */
export declare function splitUrl(url: string): [origin: string, path: string] | null;
/** The `Idempotency-Key` value the host adds to a `method` request to `url`
 * in the call whose key is `callKey`; null when it adds none. */
export declare function forwardedKey(callKey: string, method: string, url: string): string | null;

// ---------------------------------------------------------------- context

/** What the host tells a call about itself. */
export interface Context {
  /** Hex; the same on every attempt of this call's key. */
  readonly idempotencyKey: string;
  /** 1 on the first execution of this key. */
  readonly attempt: number;
  /** Wall-clock budget left for this call, in milliseconds. */
  readonly deadlineMs: number;
  /** The `Idempotency-Key` value the host adds to a `method` request to
   * `url` in this call; null for a method that carries none. */
  forwardedKey(method: string, url: string): string | null;
}

/** A context for unit tests: a fixed key, attempt 1, 10 s, unless overridden. */
export declare function testContext(
  overrides?: Partial<Pick<Context, "idempotencyKey" | "attempt" | "deadlineMs">>,
): Context;

// ---------------------------------------------------------------- reconcile answers

declare const committedAnswer: unique symbol;
declare const unknownAnswer: unique symbol;
declare const notDoneAnswer: unique symbol;

/** The effect happened; `output` is what `run` would have returned. */
export interface Committed<O> {
  readonly [committedAnswer]: true;
  readonly output: O;
}

/** The effect did not happen: the host runs the call again. */
export interface NotDone {
  readonly [notDoneAnswer]: true;
}

/** The remote cannot tell (yet); `reason` says why. */
export interface Unknown {
  readonly [unknownAnswer]: true;
  readonly reason: string;
}

/** What `reconcile` returns for a tool whose output is `O`. */
export type ReconcileAnswer<O> = Committed<O> | NotDone | Unknown;

export declare function committed<O>(output: O): Committed<O>;
export declare const NOT_DONE: NotDone;
export declare function unknown(reason: string): Unknown;

// ---------------------------------------------------------------- files

/** Files in the directories the tool's policy grants, by absolute guest
 * path (`/data/log.txt`). Outside every grant: `capability_denied`. */
export declare const files: {
  /** The file's text (UTF-8). */
  readText(path: string): string;
  /** Replaces the file's content with `text`, creating it if needed. */
  writeText(path: string, text: string): void;
  /** Appends `text` to the file, creating it if needed. */
  appendText(path: string, text: string): void;
  /** Whether a file or directory exists at `path`. */
  exists(path: string): boolean;
};

/** Called by the module build.mjs generates; not for tools. */
export declare function bindWasi(bindings: { preopens: unknown }): void;

// ---------------------------------------------------------------- tools

/** What a tool declares. `O` is the output schema; without one, `run`'s
 * result is not typed (the host still refuses what JSON cannot carry). */
export interface ToolSpec<I extends AnySchema, O extends AnySchema> {
  /** 1-64 characters of a-z, 0-9, `_` or `-`. */
  name: string;
  description: string;
  /** "0.1.0" unless given. */
  version?: string;
  effect: Effect;
  input: I;
  output?: O;
  /** The call: the decoded input (typed from `input`) to the output (typed
   * from `output`), or a promise of it. Throw `InvalidInput`, `Failed` or
   * `Transient`. */
  run(input: Infer<I>, ctx: Context): Infer<O> | Promise<Infer<O>>;
  /** For a call whose process died before its outcome was recorded:
   * `committed(output)`, `NOT_DONE` or `unknown(reason)`. */
  reconcile?(
    input: Infer<I>,
    ctx: Context,
  ): ReconcileAnswer<Infer<O>> | Promise<ReconcileAnswer<Infer<O>>>;
}

/** What `defineTool` returns: `export default` it. */
export interface Tool<I extends AnySchema = AnySchema, O extends AnySchema = AnySchema> {
  readonly name: string;
  readonly effect: Effect;
  /** The WIT `describe` export. */
  describe(): {
    name: string;
    description: string;
    version: string;
    inputSchema: string;
    outputSchema: string | undefined;
    effect: Effect;
  };
  /** The WIT `call` export (ComponentizeJS's conventions). */
  call(ctx: WitContext, input: string): Promise<string>;
  /** The WIT `reconcile` export, when the tool has one. */
  reconcile?(ctx: WitContext, input: string): Promise<{ tag: "committed" | "unknown"; val: string } | { tag: "not-done" }>;
  /** Phantom: the declared schemas, for `invoke`'s types. */
  readonly [decoded]?: [I, O];
}

/** The context record as ComponentizeJS passes it to the exports. */
export interface WitContext {
  idempotencyKey: string;
  attempt: number;
  deadlineMs: bigint | number;
}

/** Declares a tool; `export default` what it returns. A bad declaration
 * throws here, so the build fails rather than a call. */
export declare function defineTool<I extends AnySchema, O extends AnySchema = Schema<unknown, false>>(
  spec: ToolSpec<I, O>,
): Tool<I, O>;

// ---------------------------------------------------------------- unit tests

/** Runs the whole call path natively (parse, check, run, serialise): the
 * output JSON text, or a rejection with the tool's error. */
export declare function invoke(tool: Tool, input: string, ctx?: Context): Promise<string>;

/** Runs `reconcile` natively. */
export declare function invokeReconcile(
  tool: Tool,
  input: string,
  ctx?: Context,
): Promise<["committed", string] | ["not-done", null] | ["unknown", string]>;

// Only what is marked `export` above is exported (a declaration file
// otherwise exports every top-level name, the private symbols included).
export {};
