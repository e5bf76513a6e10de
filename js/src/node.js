// Node entry point: an exported model directory on disk, onnxruntime-node's CPU provider.
//   import { loadModelDir } from "seqkit-js/src/node.js";
//   const model = await loadModelDir("models/de-en", { threads: 2 });
//   const [r] = await model.translate(["Ein Hund läuft im Schnee."], { strategy: "beam", beam_size: 5 });

import fs from "node:fs/promises";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { ModelError } from "./format.js";
import { loadModel } from "./model.js";

export { ModelError, InputError } from "./format.js";

async function listFiles(root, rel = "") {
  const out = [];
  for (const entry of await fs.readdir(path.join(root, rel), { withFileTypes: true })) {
    const name = rel ? `${rel}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(root, name)));
    else out.push(name);
  }
  return out;
}

export function dirReader(dir) {
  return {
    where: dir,
    read: async (name) => new Uint8Array(await fs.readFile(path.join(dir, ...name.split("/")))),
    list: () => listFiles(dir),
  };
}

/** ``threads``: intra-op threads (default: onnxruntime's). Sequential execution, all graph optimizations, as the Python runtime. */
export async function loadModelDir(dir, { threads } = {}) {
  const stat = await fs.stat(dir).catch(() => null);
  if (!stat || !stat.isDirectory()) throw new ModelError(`${dir}: no such model directory`);
  const sessionOptions = { graphOptimizationLevel: "all", executionMode: "sequential", logSeverityLevel: 3 };
  if (threads) Object.assign(sessionOptions, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  return loadModel(dirReader(dir), { ort, sessionOptions });
}
