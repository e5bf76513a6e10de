// The exported model directory as seqkit/runtime/format.py declares it: file names, graph
// input/output names, config.json and the manifest check. A "reader" hands over the files:
// { where: "models/de-en" (how errors name the directory), read(name) -> Promise<Uint8Array>,
//   list() -> Promise<string[]> (optional: every file, '/'-separated; a browser cannot list) }.

import { sha256Hex } from "./sha256.js";

export const FORMAT_VERSION = 1;
export const CONFIG_FILE = "config.json";
export const MANIFEST_FILE = "manifest.json";
export const ENCODER_FILE = "encoder.onnx";
export const DECODER_STEP_FILE = "decoder_step.onnx";
export const LM_STEP_FILE = "lm_step.onnx";
export const CLASSIFIER_FILE = "classifier.onnx";
export const NAMES = {
  src: "src", srcLengths: "src_lengths", yPrev: "y_prev", logProbs: "log_probs", attention: "attention",
  topK: "top_k", eosId: "eos_id", topLogProbs: "top_log_probs", topIds: "top_ids", eosLogProbs: "eos_log_probs",
};
export const BATCH = "batch";

/** A model that cannot be used: the message names the file (as Python's ModelError). */
export class ModelError extends Error {
  constructor(message) {
    super(message);
    this.name = "ModelError";
  }
}

/** Bad input text or options: the message names the line or option (Python's InputError). */
export class InputError extends Error {
  constructor(message) {
    super(message);
    this.name = "InputError";
  }
}

export function joinPath(where, name) {
  return where ? `${where.replace(/\/+$/, "")}/${name}` : name;
}

/** A manifest entry must stay inside the model directory (seqkit.safepath.inside). */
function checkName(name, where) {
  const parts = name.split("/");
  if (!name || name.startsWith("/") || name.includes("\\") || parts.some((p) => p === "" || p === "." || p === "..")) {
    throw new ModelError(`${joinPath(where, MANIFEST_FILE)}: files: ${JSON.stringify(name)} is not a path inside the model directory`);
  }
}

async function readJson(reader, name) {
  const path = joinPath(reader.where, name);
  let bytes;
  try {
    bytes = await reader.read(name);
  } catch (err) {
    throw new ModelError(`${path}: missing (not an exported seqkit model?)`);
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new ModelError(`${path}: not valid JSON: ${String(err.message).slice(0, 200)}`);
  }
}

/**
 * Read manifest.json and check every file it lists by sha256, as seqkit.runtime.format.verify_manifest:
 * a missing file, a digest mismatch, or (where the reader can list) a file the manifest does not
 * list is a ModelError naming that file. Returns {manifest, files: Map(name -> bytes)}: the very
 * bytes that were hashed, so what is checked is what gets loaded.
 */
export async function verifyManifest(reader) {
  const manifestPath = joinPath(reader.where, MANIFEST_FILE);
  let manifest;
  try {
    manifest = await readJson(reader, MANIFEST_FILE);
  } catch (err) {
    if (String(err.message).endsWith("(not an exported seqkit model?)")) {
      throw new ModelError(`${manifestPath}: missing; ${reader.where} is not an exported seqkit model (see \`seqkit export\`)`);
    }
    throw err;
  }
  if (!manifest || typeof manifest.files !== "object" || manifest.files === null || Array.isArray(manifest.files)) {
    throw new ModelError(`${manifestPath}: unreadable manifest (no "files" object)`);
  }
  if (manifest.format_version !== FORMAT_VERSION) {
    throw new ModelError(`${manifestPath}: this runtime reads format ${FORMAT_VERSION}, the model is format ${manifest.format_version}`);
  }
  const files = new Map();
  for (const [name, digest] of Object.entries(manifest.files)) {
    checkName(name, reader.where);
    const path = joinPath(reader.where, name);
    let bytes;
    try {
      bytes = await reader.read(name);
    } catch (err) {
      throw new ModelError(`${path}: listed in ${MANIFEST_FILE} but missing`);
    }
    if ((await sha256Hex(bytes)) !== digest) {
      throw new ModelError(`${path}: sha256 mismatch with ${MANIFEST_FILE}; the file is corrupt or was modified`);
    }
    files.set(name, bytes);
  }
  if (reader.list) {
    const extra = (await reader.list()).filter((name) => name !== MANIFEST_FILE && !(name in manifest.files)).sort();
    if (extra.length) {
      throw new ModelError(`${joinPath(reader.where, extra[0])}: not listed in ${MANIFEST_FILE} (added after export?)`);
    }
  }
  return { manifest, files };
}

/** config.json, from the checked files; the fields this runtime relies on are checked here. */
export function readConfig(where, files) {
  const path = joinPath(where, CONFIG_FILE);
  const bytes = files.get(CONFIG_FILE);
  if (!bytes) throw new ModelError(`${path}: missing (not an exported seqkit model?)`);
  let config;
  try {
    config = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (err) {
    throw new ModelError(`${path}: not valid JSON: ${String(err.message).slice(0, 200)}`);
  }
  if (config.format_version !== FORMAT_VERSION) {
    throw new ModelError(`${path}: format_version: this runtime reads format ${FORMAT_VERSION}, the model is format ${config.format_version}`);
  }
  if (config.model_kind !== "seq2seq") {
    throw new ModelError(`${path}: model_kind is ${JSON.stringify(config.model_kind)}; the JavaScript runtime ` +
      "translates seq2seq models (translation, summarization) only");
  }
  if (config.copy_oov) {
    throw new ModelError(`${path}: copy_oov: the model copies source words outside its vocabulary ` +
      "(model.decoder.copy_oov), which the JavaScript runtime does not implement; use the Python runtime");
  }
  for (const key of ["special_ids", "memory", "state", "search", "tgt_vocab_size", "src_pad_id"]) {
    if (config[key] === undefined || config[key] === null) throw new ModelError(`${path}: ${key}: missing`);
  }
  for (const spec of [...config.memory, ...config.state]) {
    if (!Array.isArray(spec.shape) || spec.shape.indexOf(BATCH) < 0 || (spec.dtype || "float32") !== "float32") {
      throw new ModelError(`${path}: tensor ${JSON.stringify(spec.name)}: needs a float32 shape with a "batch" axis`);
    }
  }
  return config;
}
