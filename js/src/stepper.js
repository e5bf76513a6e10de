// The step-function protocol (search.js) over onnxruntime sessions: onnxruntime-node in Node,
// onnxruntime-web in a browser; the ``ort`` module is handed in, everything else is shared.
// Tensors between calls are {data: Float32Array, dims: number[]}, named and shaped as
// config.json records them (memory_i, state_i, each with a "batch" axis).
//
// Step-graph inputs are fed by name. The known ones are y_prev, memory_i, state_i and (with
// step_top_k) top_k and eos_id; EXTRA_STEP_INPUTS maps any further input name to the function
// that builds its feed once per batch from the source (start). A graph input that neither knows
// is refused at load, naming the file and the input (docs/export.md, "Step-graph inputs"). An
// export's vocabulary shortlist lives in a graph of its own (decoder_step_shortlist.onnx), which
// this runtime does not use: it decodes the full vocabulary from decoder_step.onnx.

import { BATCH, ModelError, NAMES, joinPath } from "./format.js";

/** name -> (ort, config, src rows, lengths) => ort.Tensor, fed unchanged to every step of a batch. */
export const EXTRA_STEP_INPUTS = {};

function int64(ort, values, dims) {
  return new ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);
}

/** Gather rows of ``t`` along ``axis`` (np.take): index holds row numbers of the current batch. */
export function takeRows(t, axis, index) {
  const dims = t.dims;
  const outer = dims.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const rows = dims[axis];
  const out = new Float32Array(outer * index.length * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < index.length;) {
      let run = 1; // consecutive source rows are copied in one block
      while (j + run < index.length && index[j + run] === index[j] + run) run++;
      const from = (o * rows + index[j]) * inner;
      out.set(t.data.subarray(from, from + run * inner), (o * index.length + j) * inner);
      j += run;
    }
  }
  const outDims = dims.slice();
  outDims[axis] = index.length;
  return { data: out, dims: outDims };
}

export class OrtStepper {
  constructor(ort, config, encoder, step, where) {
    this.ort = ort;
    this.config = config;
    this.encoder = encoder;
    this.stepSession = step;
    this.memoryNames = config.memory.map((t) => t.name);
    this.stateNames = config.state.map((t) => t.name);
    this.memoryAxes = config.memory.map((t) => t.shape.indexOf(BATCH));
    this.stateAxes = config.state.map((t) => t.shape.indexOf(BATCH));
    this.vocabSize = config.tgt_vocab_size;
    this.graphTopK = Boolean(config.step_top_k); // the graph's top_k/eos_id inputs must be fed
    this.hasTopK = this.graphTopK; // search may use stepTopK (false: whole rows through step)
    this.stateOut = this.stateNames.map((_, i) => `state_out_${i}`);
    this.extraInputs = step.inputNames.filter((n) => n in EXTRA_STEP_INPUTS);
    checkGraphs(config, encoder, step, where);
  }

  async start(src, lengths) {
    const batch = src.length;
    const width = Math.max(...lengths);
    const flat = [];
    for (const row of src) for (let s = 0; s < width; s++) flat.push(s < row.length ? row[s] : this.config.src_pad_id);
    const feeds = { [NAMES.src]: int64(this.ort, flat, [batch, width]), [NAMES.srcLengths]: int64(this.ort, lengths, [batch]) };
    const out = await this.encoder.run(feeds);
    const grab = (name) => ({ data: out[name].data, dims: Array.from(out[name].dims) });
    this.extraFeeds = Object.fromEntries(this.extraInputs.map((n) => [n, EXTRA_STEP_INPUTS[n](this.ort, this.config, src, lengths)]));
    return { memory: this.memoryNames.map(grab), state: this.stateNames.map(grab) };
  }

  async run(heads, y, memory, state, k, eosId) {
    const ort = this.ort;
    const feeds = { [NAMES.yPrev]: int64(ort, y, [y.length]), ...this.extraFeeds };
    this.memoryNames.forEach((n, i) => { feeds[n] = new ort.Tensor("float32", memory[i].data, memory[i].dims); });
    this.stateNames.forEach((n, i) => { feeds[n] = new ort.Tensor("float32", state[i].data, state[i].dims); });
    if (this.graphTopK) { // graph inputs must be fed even when their outputs are not read
      feeds[NAMES.topK] = int64(ort, [k], [1]);
      feeds[NAMES.eosId] = int64(ort, [eosId], []);
    }
    const fetches = [...heads, ...(this.config.has_attention ? [NAMES.attention] : []), ...this.stateOut];
    const out = await this.stepSession.run(feeds, fetches);
    return {
      heads: heads.map((h) => out[h]),
      attention: this.config.has_attention ? out[NAMES.attention].data : null,
      state: this.stateOut.map((n) => ({ data: out[n].data, dims: Array.from(out[n].dims) })),
    };
  }

  async step(y, memory, state) {
    const out = await this.run([NAMES.logProbs], y, memory, state, 1, 0);
    return { logProbs: out.heads[0].data, attention: out.attention, state: out.state };
  }

  async stepTopK(y, memory, state, k, eosId) {
    k = Math.min(k, this.vocabSize); // ONNX TopK rejects k > V
    const out = await this.run([NAMES.topLogProbs, NAMES.topIds, NAMES.eosLogProbs], y, memory, state, k, eosId);
    const [vals, ids, eos] = out.heads;
    return { top: { logProbs: vals.data, ids: Int32Array.from(ids.data, Number), eos: eos.data, k }, attention: out.attention, state: out.state };
  }

  selectMemory(memory, index) { return memory.map((m, i) => takeRows(m, this.memoryAxes[i], index)); }
  selectState(state, index) { return state.map((s, i) => takeRows(s, this.stateAxes[i], index)); }
}

/** The graphs declare exactly the inputs and outputs config.json implies (seqkit/runtime/checks.py). */
function checkGraphs(config, encoder, step, where) {
  const memory = config.memory.map((t) => t.name), state = config.state.map((t) => t.name);
  const topK = config.step_top_k ? [NAMES.topK, NAMES.eosId] : [];
  const expected = {
    "encoder.onnx": [encoder, [NAMES.src, NAMES.srcLengths], [...memory, ...state]],
    "decoder_step.onnx": [step, [NAMES.yPrev, ...memory, ...state, ...topK],
      [NAMES.logProbs, ...(config.has_attention ? [NAMES.attention] : []), ...state.map((_, i) => `state_out_${i}`),
        ...(config.step_top_k ? [NAMES.topLogProbs, NAMES.topIds, NAMES.eosLogProbs] : [])]],
  };
  for (const [file, [session, inputs, outputs]] of Object.entries(expected)) {
    const path = joinPath(where, file);
    const extra = file === "decoder_step.onnx" ? Object.keys(EXTRA_STEP_INPUTS) : [];
    const unknown = session.inputNames.filter((n) => !inputs.includes(n) && !extra.includes(n));
    const missing = inputs.filter((n) => !session.inputNames.includes(n));
    if (unknown.length || missing.length) {
      throw new ModelError(`${path}: graph inputs ${JSON.stringify(session.inputNames.slice().sort())} do not match config.json ` +
        `(expected ${JSON.stringify(inputs.slice().sort())}${unknown.length ? `; this runtime cannot feed ${JSON.stringify(unknown[0])}` : ""})`);
    }
    const outMissing = outputs.filter((n) => !session.outputNames.includes(n));
    if (outMissing.length) {
      throw new ModelError(`${path}: graph outputs ${JSON.stringify(session.outputNames.slice().sort())} do not match config.json ` +
        `(missing ${JSON.stringify(outMissing[0])})`);
    }
  }
}
