#!/usr/bin/env node
// seqkit-js translate MODEL_DIR [options] < input > output
// The JavaScript runtime on onnxruntime-node: one translation per input line (as `seqkit
// translate MODEL_DIR`). Errors are one line on stderr, `error: ...` naming the file or line, exit 1.

import fs from "node:fs";
import { parseArgs } from "node:util";
import { InputError, ModelError, loadModelDir } from "../src/node.js";

const USAGE = `usage: seqkit-js translate MODEL_DIR [-i FILE] [--strategy greedy|beam] [--beam-size N]
       [--n-best N] [--length-penalty A] [--min-len N] [--no-repeat-ngram-size N] [--batch-size N]
       [--threads N] [--json] [--timing] [--warmup N]
  --json     one JSON object per line: text, tokens (target ids), score, log_prob, n_best, warnings
  --timing   print {"load_seconds", "decode_seconds", "lines"} on stderr (for tools/bench_js.py)
  --warmup N translate the first N lines once before the timed run (JIT and onnxruntime warm-up)`;

function fail(message) {
  process.stderr.write(`error: ${String(message).replace(/\s*\n\s*/g, " ")}\n`); // one line, always
  process.exit(1);
}

/** Lines as seqkit.textio reads them: split at \n, one trailing \r dropped, strict UTF-8. */
function readLines(bytes, where) {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  const lines = [];
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    let stop = end;
    if (stop > start && bytes[stop - 1] === 0x0d) stop--;
    try {
      lines.push(decoder.decode(bytes.subarray(start, stop)));
    } catch {
      throw new InputError(`${where}: line ${lines.length + 1} is not UTF-8 text`);
    }
    start = end + 1;
  }
  return lines;
}

async function main() {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        input: { type: "string", short: "i" }, strategy: { type: "string" }, "beam-size": { type: "string" },
        "n-best": { type: "string" }, "length-penalty": { type: "string" }, "batch-size": { type: "string" },
        "min-len": { type: "string" }, "no-repeat-ngram-size": { type: "string" },
        threads: { type: "string" }, json: { type: "boolean" }, timing: { type: "boolean" }, warmup: { type: "string" }, help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) { process.stdout.write(USAGE + "\n"); return; }
  if (positionals[0] !== "translate" || positionals.length !== 2) fail(`expected: translate MODEL_DIR\n${USAGE}`);
  const int = (name) => {
    if (values[name] === undefined) return undefined;
    const v = Number(values[name]);
    if (!Number.isInteger(v)) fail(`--${name}: ${JSON.stringify(values[name])} is not an integer`);
    return v;
  };
  const overrides = { strategy: values.strategy, beam_size: int("beam-size"), n_best: int("n-best"), batch_size: int("batch-size"),
    min_len: int("min-len"), no_repeat_ngram_size: int("no-repeat-ngram-size") };
  if (values["length-penalty"] !== undefined) overrides.length_penalty = Number(values["length-penalty"]);
  // As `seqkit translate`: a --beam-size given alone picks the strategy (1: greedy, more: beam).
  if (overrides.beam_size !== undefined && overrides.strategy === undefined) overrides.strategy = overrides.beam_size === 1 ? "greedy" : "beam";
  const where = values.input ?? "stdin";
  let bytes;
  try {
    bytes = fs.readFileSync(values.input ?? 0);
  } catch (err) {
    fail(`${where}: cannot read: ${err.message}`);
  }
  const lines = readLines(bytes, where);
  const t0 = performance.now();
  const model = await loadModelDir(positionals[1], { threads: int("threads") });
  if (values.warmup) await model.translate(lines.slice(0, int("warmup")), overrides);
  const t1 = performance.now();
  const results = await model.translate(lines, overrides);
  if (values.timing) {
    const timing = { load_seconds: (t1 - t0) / 1000, decode_seconds: (performance.now() - t1) / 1000, lines: lines.length };
    process.stderr.write(JSON.stringify(timing) + "\n");
  }
  for (const r of results) for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
  const out = results.map((r) => (values.json
    ? JSON.stringify({ text: r.text, tokens: r.tokens, score: r.score, log_prob: r.logProb,
      n_best: r.nBest.map((c) => ({ text: c.text, score: c.score, log_prob: c.logProb })), warnings: r.warnings })
    : r.text));
  process.stdout.write(out.length ? out.join("\n") + "\n" : "");
}

main().catch((err) => {
  if (err instanceof ModelError || err instanceof InputError) fail(err.message);
  fail(`${err.name || "Error"}: ${String(err.message || err)}`);
});
