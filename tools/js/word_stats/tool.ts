// word_stats: counts a text's characters, words, lines, sentences and
// paragraphs, estimates its reading time, and lists its most frequent
// words (case-folded, optionally leaving some out, such as stop words).
// Pure: the same text always gives the same numbers, so toolhost replays
// answers from its cache.
//
// Written in TypeScript: `Input` and `Stats` are the types the `t` schemas
// decode to, so `run` is checked against the schema the host publishes.

import { defineTool, t, InvalidInput, type Infer } from "./toolhost.js";

const Input = t.object({
  text: t.string().describe("The text to measure."),
  top: t
    .optional(t.integer({ minimum: 0, maximum: 100 }))
    .describe("How many of the most frequent words to list (default 10; 0 for none)."),
  ignore: t
    .optional(t.array(t.string()))
    .describe("Words left out of `top`, compared case-insensitively (such as stop words)."),
  words_per_minute: t
    .optional(t.integer({ minimum: 1, maximum: 2000 }))
    .describe("Reading speed for `reading_minutes` (default 230)."),
});

const Stats = t.object({
  characters: t.integer().describe("Unicode code points."),
  words: t.integer(),
  unique_words: t.integer().describe("Distinct words, case-folded."),
  lines: t.integer(),
  sentences: t.integer(),
  paragraphs: t.integer().describe("Blocks of text between blank lines."),
  reading_minutes: t.number().describe("words / words_per_minute, to a tenth."),
  top: t.array(t.object({ word: t.string(), count: t.integer() })),
});

export type Input = Infer<typeof Input>;
export type Stats = Infer<typeof Stats>;

/** The most text a call takes: the host caps the input anyway; this keeps
 * the answer's cost bounded for a word list. */
const MAX_CHARACTERS = 1_000_000;

// A word: letters or digits, with inner apostrophes or hyphens ("don't",
// "well-known") and, between digits, a point or comma ("3.14", "1,000");
// a sentence ends at `.`, `!`, `?` or `…` before a space or the end
// ("3.14" does not end one); a paragraph is a block between blank lines.
// Only blocks holding a word count.
//
// Letters are spelt out (Latin with its accents and combining marks,
// Greek, Cyrillic): the guest's engine is built without Unicode property
// tables, so a `\p{L}` regex that works in Node fails the build (Wizer's
// SyntaxError "invalid class property name").
const LETTER = "0-9A-Za-z\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u024F\u0300-\u036F\u0370-\u03FF\u0400-\u04FF";
const WORD = new RegExp(`[${LETTER}]+(?:(?:['\u2019-]|(?<=[0-9])[.,](?=[0-9]))[${LETTER}]+)*`, "g");
const HAS_WORD = new RegExp(`[${LETTER}]`);
const SENTENCE_END = /[.!?\u2026]+(?=\s|$)/;
const BLANK_LINE = /\n\s*\n/;

const holdsWords = (parts: string[]) => parts.filter((p) => HAS_WORD.test(p)).length;

export function stats(input: Input): Stats {
  const { text } = input;
  const characters = [...text].length;
  if (characters > MAX_CHARACTERS) {
    throw new InvalidInput(`the text has ${characters} characters; the most is ${MAX_CHARACTERS}`);
  }
  const words = text.match(WORD) ?? [];
  const counts = new Map<string, number>();
  for (const word of words) {
    const folded = word.toLowerCase().replaceAll("\u2019", "'");
    counts.set(folded, (counts.get(folded) ?? 0) + 1);
  }
  const ignored = new Set((input.ignore ?? []).map((w) => w.toLowerCase()));
  const top = [...counts]
    .filter(([word]) => !ignored.has(word))
    // Most frequent first; ties in code-point order, so answers are stable.
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, input.top ?? 10)
    .map(([word, count]) => ({ word, count }));
  const lines = text === "" ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  const perMinute = input.words_per_minute ?? 230;
  return {
    characters,
    words: words.length,
    unique_words: counts.size,
    lines,
    sentences: holdsWords(text.split(SENTENCE_END)),
    paragraphs: holdsWords(text.split(BLANK_LINE)),
    reading_minutes: Math.round((words.length / perMinute) * 10) / 10,
    top,
  };
}

export default defineTool({
  name: "word_stats",
  description:
    "Counts a text's characters, words, lines, sentences and paragraphs, estimates its reading time, and lists its most frequent words.",
  effect: "pure",
  input: Input,
  output: Stats,
  run: (input) => stats(input),
});
