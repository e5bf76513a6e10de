// Browser entry point: an exported model published as static files, onnxruntime-web on WASM.
//   import { loadModelUrl } from "./seqkit/browser.js";
//   const model = await loadModelUrl("model/", { threads: 4 });
// The page's import map resolves "onnxruntime-web" and "@sctg/sentencepiece-js" to the copies
// `seqkit web` puts under vendor/. Threads need a cross-origin-isolated page (COOP/COEP headers,
// docs/web.md); elsewhere onnxruntime-web runs on one thread.

import * as ort from "onnxruntime-web";
import { ModelError } from "./format.js";
import { loadModel } from "./model.js";

export { ModelError, InputError } from "./format.js";

export function urlReader(base) {
  const root = new URL(base, document.baseURI).href;
  return {
    where: base.replace(/\/+$/, ""),
    read: async (name) => {
      const response = await fetch(new URL(name, root), { cache: "no-cache" });
      if (!response.ok) throw new ModelError(`${base}${name}: HTTP ${response.status}`);
      return new Uint8Array(await response.arrayBuffer());
    },
  };
}

/** The threads onnxruntime-web can use here: all cores where the page is cross-origin isolated. */
export function availableThreads() {
  return globalThis.crossOriginIsolated ? navigator.hardwareConcurrency || 1 : 1;
}

export async function loadModelUrl(base, { threads } = {}) {
  ort.env.wasm.numThreads = Math.min(threads || availableThreads(), availableThreads());
  ort.env.wasm.wasmPaths = new URL("../vendor/onnxruntime-web/", import.meta.url).href;
  ort.env.logLevel = "error";
  const sessionOptions = { executionProviders: ["wasm"], graphOptimizationLevel: "all", executionMode: "sequential" };
  const model = await loadModel(urlReader(base), { ort, sessionOptions });
  model.threads = ort.env.wasm.numThreads;
  return model;
}
