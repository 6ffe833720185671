// BLAKE3 and the forwarded key against known answers: the specification's
// empty-input hash, and inputs across the 64-byte block and 1024-byte chunk
// boundaries (plain and in derive-key mode under the forwarded key's
// context) as the reference crate (pip `blake3` 1.0.11) and the Python
// SDK's implementation compute them.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import {
  blake3, deriveKey, hex, forwardedKey, splitUrl, testContext, FORWARDED_KEY_CONTEXT,
} from "../toolhost.js";

// [length, blake3, derive-key] of bytes (i * 7 + 3) % 251.
const KNOWN = [
  [1, "e1e0e81d6ea39b0cf8b86ffd440921011f57400cbc3f76a8a171906a9b8d7505",
    "ef007b8b14e0e41aef9584deaaa6f49067859deb4cee39fea9b06255ba650ec9"],
  [63, "d24fb797708be34389a85d96c1a9db21582fe8f24840b27b9859fd4ea4ca4c10",
    "4bfa2281086bae2d59544a48403ab8a17c293e17baa17bb3799a0f7e4f05df5a"],
  [64, "b83e47b6a178a4e2e3e1c08b8fbe870efe1f829e4fd44dfa3470007abd6fdc3b",
    "2ed295188eb3f21bf7dc85c1c9a4c731d2ca95cdff180b982f12b4abe120956d"],
  [65, "03078b49cce3fff54a65a2eaa33dad8d9782798bd51e1cd4a1483283a0268873",
    "3729ef3df79292538e24a97b7a0eaeb959a89f1b23e08702f7e486ff0686dc95"],
  [1023, "562194b1fcae7c0933be0d66067011f544047a677a044cb8cccb0dcebb74169f",
    "c55b7eeb39bf3aafca49149f3e7a8ad75c5f75df48249b1a6840158efdd15034"],
  [1024, "1d299b433a99665838fd11e1a5f18148613ac6984dc9d184e527b17c05a1989f",
    "40a9cb53dd58a4b5f3a601eada967502c109b76ffe194d293b222cad8e5f86b3"],
  [1025, "23ba53947a167867e27e1bbc63f790143128af06fbc970e899e2d579fa7c7e05",
    "38496157f342e14e48b1d0bae5232f4bb73dcd71223ac0946ee3fe31da8e0088"],
  [2048, "107fb6c5cec897cfec1cfd42b671187789866677249ab06ac1a0430754cf012d",
    "8a4976c583fcb134310b98fd9f1d5f6bc14596d3b42370eac69cedc075ea05db"],
  [3073, "ad51a5d52311745129551d2741067af7cf21fbc7a17402c6e7c0bc4564b0d551",
    "94531fdfad7445a74b50f249197ac7d2480dd8a97e55033528da0bc6a862b7bc"],
  [8193, "065bd3a8bbe8781a20dce83ebde551b4ff8402f9e2cae9dd5ab2a06696ac7669",
    "def3dc086ad43b602b2321ecb688db2b59a957bf40f27332b3818de8ee46c5d9"],
];

const input = (n) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + 3) % 251);

test("the empty input hashes to the specification's answer", () => {
  assert.equal(hex(blake3(new Uint8Array(0))),
    "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
});

test("inputs across block and chunk boundaries match the reference", () => {
  for (const [n, plain, derived] of KNOWN) {
    assert.equal(hex(blake3(input(n))), plain, `blake3 of ${n} bytes`);
    assert.equal(hex(deriveKey(FORWARDED_KEY_CONTEXT, input(n))), derived, `derive-key of ${n} bytes`);
  }
});

test("the forwarded key is the Python SDK's for the same call", (t) => {
  const python = fileURLToPath(new URL("../../python", import.meta.url));
  const cases = [
    ["00".repeat(32), "post", "HTTPS://user@API.example.com:8443/v1/charges?x=1#f"],
    ["ab".repeat(32), "DELETE", "http://127.0.0.1:8080"],
    ["k", "put", "http://h/" + "p".repeat(2000)],
  ];
  const script = "import json,sys\nfrom toolhost_sdk import Context\n" +
    "for k,m,u in json.load(sys.stdin): print(Context(k,1,1).forwarded_key(m,u))";
  const run = spawnSync("python3", ["-c", script], {
    cwd: python, input: JSON.stringify(cases), encoding: "utf8", timeout: 30_000,
  });
  if (run.error || run.status !== 0) {
    assert.notEqual(process.env.CI, "true", `python3 is needed in CI: ${run.error || run.stderr}`);
    t.skip("python3 is not available to compare with");
    return;
  }
  const theirs = run.stdout.trim().split("\n");
  assert.deepEqual(cases.map(([k, m, u]) => forwardedKey(k, m, u)), theirs);
  assert.equal(theirs[0], "52bf908c1373f455f363c12430d89732");
});

test("only mutating methods and http(s) URLs get a key", () => {
  const ctx = testContext();
  assert.equal(ctx.forwardedKey("GET", "https://api.example.com/v1"), null);
  assert.equal(ctx.forwardedKey("POST", "ftp://api.example.com/v1"), null);
  const key = ctx.forwardedKey("post", "HTTPS://user@API.example.com:8443/v1/charges?x=1#f");
  assert.match(key, /^[0-9a-f]{32}$/);
  assert.equal(key, ctx.forwardedKey("POST", "https://api.example.com:8443/v1/charges"));
  assert.notEqual(key, ctx.forwardedKey("POST", "https://api.example.com:8443/v1/refunds"));
  assert.notEqual(key, testContext({ idempotencyKey: "11".repeat(32) })
    .forwardedKey("POST", "https://api.example.com:8443/v1/charges"));
  assert.equal(ctx.forwardedKey("POST", "http://h"), ctx.forwardedKey("POST", "http://h/"));
});

test("URLs split into origin and path as the host splits them", () => {
  assert.deepEqual(splitUrl("http://h:1"), ["http://h:1", ""]);
  assert.deepEqual(splitUrl("https://a@h/p?q"), ["https://h", "/p"]);
  assert.deepEqual(splitUrl("http://h?q=1"), ["http://h", ""]);
  assert.equal(splitUrl("https:///p"), null);
  assert.equal(splitUrl("/relative"), null);
});
