// The built-in tokenizers (seqkit/tokenizers/): char, word and sentencepiece, loaded from the
// model's tokenizer/src and tokenizer/tgt directories. Ids: pad 0, unk 1, bos 2, eos 3.
// sentencepiece runs the C++ library compiled to WebAssembly (@sctg/sentencepiece-js), so its
// pieces and ids are those of the Python sentencepiece for the same .model file.

import { SentencePieceProcessor } from "@sctg/sentencepiece-js";
import { ModelError, joinPath } from "./format.js";

export const SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "</s>"];
export const UNK_MARK = "\u2047"; // what decode prints for an unknown id, as sentencepiece does
const [PAD, UNK, BOS, EOS] = [0, 1, 2, 3];

class VocabTokenizer {
  constructor(config, tokens, where) {
    if (SPECIAL_TOKENS.some((t, i) => tokens[i] !== t)) {
      throw new ModelError(`${where}: vocabulary must start with ${JSON.stringify(SPECIAL_TOKENS)}`);
    }
    this.config = config;
    this.tokens = tokens;
    this.ids = new Map(tokens.map((t, i) => [t, i]));
    this.padId = PAD; this.unkId = UNK; this.bosId = BOS; this.eosId = EOS;
    this.isVocab = true;
  }
  get vocabSize() { return this.tokens.length; }
  encode(text) { return this.tokenize(text).map((t) => (this.ids.has(t) ? this.ids.get(t) : UNK)); }
  decode(ids) {
    const n = this.tokens.length;
    const words = [];
    for (const i of ids) {
      if (i === PAD || i === BOS || i === EOS) continue;
      words.push(i >= 0 && i < n && i !== UNK ? this.tokens[i] : UNK_MARK);
    }
    return this.detokenize(words);
  }
}

export class CharTokenizer extends VocabTokenizer {
  tokenize(text) { return Array.from(this.config.lowercase ? text.toLowerCase() : text); } // code points, as list(str)
  detokenize(tokens) { return tokens.join(""); }
}

// Python's str whitespace, for \s and \S: JavaScript's differs (it counts U+FEFF, not U+001C-U+001F, U+0085).
const PY_SPACE = "\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
// Python's \w on str: letters, digits (any script) and underscore.
const PY_WORD = "\\p{L}\\p{N}_";

/** A Python `re` pattern as a JavaScript RegExp with the same classes; null where the syntax is
 * Python-only (the word tokenizer then refuses the model with the pattern named). */
export function pythonPattern(pattern) {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c !== "\\") { out += c; continue; }
    const d = pattern[++i];
    const inClass = /\[[^\]]*$/.test(out.replace(/\\./g, ""));
    const cls = { s: PY_SPACE, w: PY_WORD, d: "\\p{Nd}" }[d.toLowerCase()];
    if (cls === undefined) {
      if ("AZbB".includes(d)) return null; // anchors whose meaning differs or that JS lacks (\A, \Z)
      out += "\\" + d;
    } else if (d === d.toLowerCase()) {
      out += inClass ? cls : `[${cls}]`;
    } else {
      if (inClass) return null; // a negated class inside [...] has no JS spelling
      out += `[^${cls}]`;
    }
  }
  if (/\(\?P|\(\?#|\+\+|\*\+|\?\+|\(\?>/.test(pattern)) return null;
  try {
    return new RegExp(out, "gu");
  } catch {
    return null;
  }
}

export class WordTokenizer extends VocabTokenizer {
  constructor(config, tokens, where) {
    super(config, tokens, where);
    this.regex = pythonPattern(config.pattern);
    if (!this.regex) {
      throw new ModelError(`${where}: word pattern ${JSON.stringify(config.pattern)} uses Python-only regular ` +
        "expression syntax that the JavaScript runtime does not translate");
    }
  }
  tokenize(text) {
    const s = this.config.lowercase ? text.toLowerCase() : text;
    return Array.from(s.matchAll(this.regex), (m) => m[0]);
  }
  detokenize(tokens) { return tokens.join(" "); }
}

/** The pieces of a sentencepiece ModelProto (field 1: repeated SentencePiece, whose field 1 is
 * the piece): the library compiled to WebAssembly exposes no IdToPiece nor GetPieceSize. */
export function sentencePieces(bytes) {
  const pieces = [];
  let pos = 0;
  const varint = () => {
    let value = 0, shift = 0, b;
    do {
      if (pos >= bytes.length) throw new Error("truncated varint");
      b = bytes[pos++];
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return value;
  };
  const skip = (wire) => {
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 2) { const n = varint(); pos += n; }
    else if (wire === 5) pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  };
  const decoder = new TextDecoder("utf-8");
  while (pos < bytes.length) {
    const key = varint();
    if (key === ((1 << 3) | 2)) {
      const size = varint();
      const end = pos + size;
      let piece = "";
      while (pos < end) {
        const k = varint();
        if (k === ((1 << 3) | 2)) {
          const n = varint();
          piece = decoder.decode(bytes.subarray(pos, pos + n));
          pos += n;
        } else skip(k & 7);
      }
      pos = end;
      pieces.push(piece);
    } else skip(key & 7);
  }
  if (pos !== bytes.length) throw new Error("truncated message");
  return pieces;
}

export class SentencePieceTokenizer {
  constructor(processor, pieces) {
    this.sp = processor;
    this.pieces = pieces;
    this.padId = PAD; this.unkId = UNK; this.bosId = BOS; this.eosId = EOS;
    this.isVocab = false;
  }
  static async fromBytes(bytes, where) {
    const sp = new SentencePieceProcessor();
    try {
      await sp._loadModel(bytes); // the library's loader from bytes (its load() reads a Node file path)
    } catch (err) {
      throw new ModelError(`${where}: not a sentencepiece model: ${String(err.message || err).slice(0, 200)}`);
    }
    let pieces;
    try {
      pieces = sentencePieces(bytes);
    } catch (err) {
      throw new ModelError(`${where}: not a sentencepiece model: ${err.message}`);
    }
    const tok = new SentencePieceTokenizer(sp, pieces);
    const found = pieces.slice(0, 4);
    if (found.some((p, i) => p !== SPECIAL_TOKENS[i])) {
      throw new ModelError(`${where}: sentencepiece model must start with ${JSON.stringify(SPECIAL_TOKENS)}, has ${JSON.stringify(found)}`);
    }
    return tok;
  }
  get vocabSize() { return this.pieces.length; }
  encode(text) { return this.sp.encodeIds(text); }
  decode(ids) {
    const n = this.vocabSize;
    const kept = [];
    for (const i of ids) if (i !== PAD && i !== BOS && i !== EOS) kept.push(i >= 0 && i < n ? i : UNK);
    return kept.length ? this.sp.decodeIds(kept) : "";
  }
}

/** The tokenizer saved in ``dir`` (e.g. "tokenizer/src") among the checked ``files``. */
export async function loadTokenizer(where, files, dir) {
  const jsonName = `${dir}/tokenizer.json`;
  const path = joinPath(where, jsonName);
  const bytes = files.get(jsonName);
  if (!bytes) throw new ModelError(`${path}: tokenizer file not found`);
  let payload;
  try {
    payload = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new ModelError(`${path}: not a valid tokenizer.json: ${String(err.message).slice(0, 200)}`);
  }
  const config = payload.config || {};
  if (payload.type === "char" || payload.type === "word") {
    if (!Array.isArray(payload.vocab) || !payload.vocab.every((t) => typeof t === "string")) {
      throw new ModelError(`${path}: 'vocab' must be a list of strings`);
    }
    const cls = payload.type === "char" ? CharTokenizer : WordTokenizer;
    return new cls({ pattern: "\\S+", lowercase: false, ...config }, payload.vocab, path);
  }
  if (payload.type === "sentencepiece") {
    const modelName = `${dir}/${payload.model_file}`;
    const model = files.get(modelName);
    if (typeof payload.model_file !== "string" || payload.model_file.includes("/") || !model) {
      throw new ModelError(`${joinPath(where, modelName)}: sentencepiece model file not found`);
    }
    return SentencePieceTokenizer.fromBytes(model, joinPath(where, modelName));
  }
  throw new ModelError(`${path}: tokenizer type ${JSON.stringify(payload.type)} has no JavaScript implementation ` +
    "(built in: char, word, sentencepiece)");
}
