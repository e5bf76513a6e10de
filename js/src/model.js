// An exported model, ready to translate: the manifest checked, config.json read, the encoder and
// step sessions opened, the tokenizers loaded. Text handling mirrors seqkit.inference.Translator:
// clean each line, encode (ids cut to max_input_len - 1, then eos), sort longest first, decode in
// batches of search.batch_size, return results in input order.

import { CONFIG_FILE, DECODER_STEP_FILE, ENCODER_FILE, InputError, ModelError, joinPath, readConfig, verifyManifest } from "./format.js";
import { beamSearch, greedy, maxLengths } from "./search.js";
import { OrtStepper } from "./stepper.js";
import { loadTokenizer, UNK_MARK } from "./tokenizers.js";

export const EOS_LABEL = "</s>";
// seqkit.search.SearchConfig: the options the JS runtime honours, with their bounds.
const SEARCH_OPTIONS = {
  strategy: (v) => ["greedy", "beam"].includes(v) || "must be 'greedy' or 'beam' (sampling is Python-only)",
  beam_size: (v) => (Number.isInteger(v) && v >= 1 && v <= 256) || "must be an integer in 1..256",
  n_best: (v) => (Number.isInteger(v) && v >= 1) || "must be an integer >= 1",
  length_penalty: (v) => (Number.isFinite(v) && v >= 0 && v <= 10) || "must be a number in 0..10",
  max_len_ratio: (v) => (Number.isFinite(v) && v >= 0 && v <= 100) || "must be a number in 0..100",
  max_len_offset: (v) => (Number.isInteger(v) && v >= 0) || "must be an integer >= 0",
  max_len: (v) => (Number.isInteger(v) && v >= 1 && v <= 100000) || "must be an integer in 1..100000",
  min_len: (v) => (Number.isInteger(v) && v >= 0) || "must be an integer >= 0",
  no_repeat_ngram_size: (v) => (Number.isInteger(v) && v >= 0) || "must be an integer >= 0",
  batch_size: (v) => (Number.isInteger(v) && v >= 1) || "must be an integer >= 1",
  max_input_len: (v) => (Number.isInteger(v) && v >= 2) || "must be an integer >= 2",
  replace_unk: (v) => typeof v === "boolean" || "must be true or false",
};
const SAMPLING_ONLY = ["temperature", "top_k", "top_p", "seed"];

// C0/C1 control characters other than tab (seqkit.inference._CONTROL), and Python's str.strip() set.
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;
const PY_STRIP = /^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** seqkit.inference.clean_text: valid Unicode, control characters to spaces, stripped. */
export function cleanText(text, where) {
  if (typeof text !== "string") throw new InputError(`${where}: expected text, got ${typeof text}`);
  const bad = LONE_SURROGATE.exec(text);
  if (bad) throw new InputError(`${where}: not valid Unicode text (surrogates not allowed at character ${bad.index})`);
  return text.replace(CONTROL, " ").replace(PY_STRIP, "");
}

/** The exported search defaults with ``overrides`` applied and checked (an InputError names the option). */
export function resolveSearch(defaults, overrides = {}) {
  const search = { ...defaults };
  for (const [key, value] of Object.entries(overrides)) {
    if (value === undefined || value === null) continue;
    if (SAMPLING_ONLY.includes(key)) continue;
    if (!(key in SEARCH_OPTIONS)) throw new InputError(`search option ${key}: unknown (known: ${Object.keys(SEARCH_OPTIONS).join(", ")})`);
    search[key] = value;
  }
  for (const [key, check] of Object.entries(SEARCH_OPTIONS)) {
    const ok = check(search[key]);
    if (ok !== true) throw new InputError(`search option ${key}: ${ok}`);
  }
  if (search.n_best > search.beam_size) throw new InputError(`search options: n_best (${search.n_best}) must be <= beam_size (${search.beam_size})`);
  return search;
}

export class RuntimeModel {
  constructor({ where, config, manifest, stepper, srcTokenizer, tgtTokenizer }) {
    Object.assign(this, { where, config, manifest, stepper, srcTokenizer, tgtTokenizer });
  }

  /** One result per line, in input order: {text, tokens, score, logProb, nBest, attention, srcTokens, warnings}. */
  async translate(lines, { returnAttention = false, firstLine = 1, ...overrides } = {}) {
    const search = resolveSearch(this.config.search, overrides);
    if (search.replace_unk && !(this.srcTokenizer.isVocab && this.tgtTokenizer.isVocab)) {
      throw new ModelError("search.replace_unk: needs tokenizers that split text into vocabulary tokens (word, char)");
    }
    const results = new Array(lines.length);
    const todo = [];
    lines.forEach((line, i) => {
      const text = cleanText(line, `line ${i + firstLine}`);
      if (!text) {
        results[i] = { text: "", tokens: [], score: 0, logProb: 0, nBest: [{ text: "", logProb: 0, score: 0 }], attention: null, srcTokens: [], warnings: [] };
        return;
      }
      const ids = this.srcTokenizer.encode(text);
      const max = search.max_input_len;
      const warnings = ids.length > max - 1
        ? [`line ${i + firstLine}: source longer than ${max} tokens (eos included); truncated`] : [];
      todo.push({ i, ids: [...ids.slice(0, max - 1), this.srcTokenizer.eosId], warnings, text });
    });
    todo.sort((a, b) => b.ids.length - a.ids.length); // stable: ties keep input order
    const wantAttention = returnAttention || search.replace_unk;
    for (let start = 0; start < todo.length; start += search.batch_size) {
      const chunk = todo.slice(start, start + search.batch_size);
      const hyps = await this.decode(chunk.map((c) => c.ids), search, wantAttention);
      chunk.forEach((c, j) => { results[c.i] = this.result(hyps[j], c, search, returnAttention); });
    }
    return results;
  }

  async decode(rows, search, returnAttention) {
    const lengths = rows.map((r) => r.length);
    const tgt = this.tgtTokenizer;
    const common = { bosId: tgt.bosId, eosId: tgt.eosId, maxLen: maxLengths(search, lengths), minLen: search.min_len, returnAttention };
    if (search.strategy === "greedy") return (await greedy(this.stepper, rows, lengths, common)).map((h) => [h]);
    return beamSearch(this.stepper, rows, lengths, { ...common, beamSize: search.beam_size, lengthPenalty: search.length_penalty,
      nBest: search.n_best, noRepeatNgramSize: search.no_repeat_ngram_size });
  }

  result(hyps, item, search, returnAttention) {
    if (!hyps.length) throw new ModelError("the model produced no hypothesis (its scores are not finite: NaN or infinite weights?)");
    const words = search.replace_unk ? this.srcTokenizer.tokenize(item.text).slice(0, item.ids.length - 1) : null;
    const decode = (h) => (words ? this.replaceUnknowns(h.tokens, h.attention, words) : this.tgtTokenizer.decode(h.tokens));
    const best = hyps[0];
    return {
      text: decode(best), tokens: best.tokens, score: best.score, logProb: best.logProb,
      nBest: hyps.map((h) => ({ text: decode(h), logProb: h.logProb, score: h.score })),
      attention: returnAttention ? best.attention : null, srcTokens: item.ids, warnings: item.warnings,
    };
  }

  /** seqkit.inference.replace_unknowns: an unk becomes the source word its step attended to most. */
  replaceUnknowns(tokens, attention, srcWords) {
    const tok = this.tgtTokenizer;
    const out = [];
    tokens.forEach((id, t) => {
      if (id === tok.padId || id === tok.bosId || id === tok.eosId) return;
      if (id === tok.unkId) {
        const row = attention[t];
        let j = 0;
        for (let s = 1; s < row.length; s++) if (row[s] > row[j]) j = s;
        out.push(j < srcWords.length ? srcWords[j] : UNK_MARK);
      } else out.push(tok.decode([id]));
    });
    return tok.detokenize(out);
  }

  /** Heat-map labels (seqkit.plot.attention_labels): each id decoded alone, eos as </s>. */
  labels(result) {
    const label = (tok, ids) => ids.map((i) => (i === tok.eosId ? EOS_LABEL : tok.decode([i]).trim() || "\u00b7"));
    return { src: label(this.srcTokenizer, result.srcTokens), tgt: [...label(this.tgtTokenizer, result.tokens), EOS_LABEL] };
  }
}

/**
 * Open an exported model through ``reader`` (see format.js) with the onnxruntime module ``ort``
 * (onnxruntime-node or onnxruntime-web) and its ``sessionOptions``. Every file is checked
 * against manifest.json before any is used; a ModelError names the file at fault.
 */
export async function loadModel(reader, { ort, sessionOptions = {} }) {
  const where = reader.where;
  const { manifest, files } = await verifyManifest(reader);
  const config = readConfig(where, files);
  const open = async (name) => {
    const bytes = files.get(name);
    if (!bytes) throw new ModelError(`${joinPath(where, name)}: missing (not listed in the manifest)`);
    try {
      return await ort.InferenceSession.create(bytes, sessionOptions);
    } catch (err) {
      throw new ModelError(`${joinPath(where, name)}: onnxruntime cannot load it: ${String(err.message || err).slice(0, 300)}`);
    }
  };
  const encoder = await open(ENCODER_FILE);
  const step = await open(DECODER_STEP_FILE);
  const stepper = new OrtStepper(ort, config, encoder, step, where);
  const srcTokenizer = await loadTokenizer(where, files, "tokenizer/src");
  const tgtTokenizer = await loadTokenizer(where, files, "tokenizer/tgt");
  const cfg = joinPath(where, CONFIG_FILE);
  if (tgtTokenizer.vocabSize !== config.tgt_vocab_size) {
    throw new ModelError(`${cfg}: tgt_vocab_size is ${config.tgt_vocab_size} but the target tokenizer has ${tgtTokenizer.vocabSize} tokens`);
  }
  if (srcTokenizer.vocabSize !== config.src_vocab_size) {
    throw new ModelError(`${cfg}: src_vocab_size is ${config.src_vocab_size} but the source tokenizer has ${srcTokenizer.vocabSize} tokens`);
  }
  const ids = config.special_ids;
  for (const [field, value] of [["pad", tgtTokenizer.padId], ["unk", tgtTokenizer.unkId], ["bos", tgtTokenizer.bosId], ["eos", tgtTokenizer.eosId]]) {
    if (ids[field] !== value) throw new ModelError(`${cfg}: special_ids.${field} is ${ids[field]} but the target tokenizer's is ${value}`);
  }
  resolveSearch(config.search); // the exported defaults must be valid before the first call
  return new RuntimeModel({ where, config, manifest, stepper, srcTokenizer, tgtTokenizer });
}
