// Greedy and beam search over a step function, written against seqkit/search.py and
// seqkit/beam.py (the reference): the same stopping rules, length penalty, min_len/max_len
// constraints, tie-breaking (lower id, lower beam) and float64 score arithmetic, so the same
// log-probabilities give the same token ids. Shapes: B sentences, K beams, N rows per step,
// V vocabulary, S source length. Arrays are row-major typed arrays.
//
// A step function (see stepper.js), every method async where it runs a graph:
//   start(src, lengths) -> {memory, state}          src: rows of ids (B), lengths (B)
//   step(y, memory, state) -> {logProbs (N*V) Float32Array, attention (N*S) | null, state}
//   stepTopK(y, memory, state, k, eosId) -> {top: {logProbs (N*k'), ids (N*k'), eos (N), k'}, attention, state}
//     (only where hasTopK: the graph's own TopK, k' = min(k, V))
//   selectMemory(memory, index), selectState(state, index): gather rows (index: array of row numbers)
//   vocabSize

const NEG_INF = -Infinity;

/** GNMT (Wu et al., 2016): ((5 + L) / 6) ** alpha; L counts the final eos. */
export function lengthPenaltyFactor(length, alpha) {
  const base = (5.0 + length) / 6.0;
  if (alpha === 1) return base; // exactly numpy's x ** 1.0, without relying on Math.pow's last bit
  if (alpha === 0) return 1.0;
  return Math.pow(base, alpha);
}

/** The recipe's max_len rule: min(max_len, floor(ratio * source length + offset)), eos excluded. */
export function maxLengths(search, srcLengths) {
  return srcLengths.map((n) => Math.min(Math.floor(search.max_len_ratio * n + search.max_len_offset), search.max_len));
}

/** A float64 copy of one row of log-probs with eos blocked before min_len and forced at the limit. */
function constrainRow(logp, offset, vocab, t, limit, eosId, minLen) {
  const row = new Float64Array(vocab);
  for (let v = 0; v < vocab; v++) row[v] = logp[offset + v];
  const eos = row[eosId];
  if (t < minLen) row[eosId] = NEG_INF;
  if (t >= limit) {
    row.fill(NEG_INF);
    row[eosId] = eos;
  }
  return row;
}

/** Per-row attention history: row r holds one Float32Array (S) per step (the _Attn buffer). */
class AttnBuf {
  constructor(enabled, rows) {
    this.enabled = enabled;
    this.rows = enabled ? Array.from({ length: rows }, () => []) : null;
  }
  write(t, attn, srcLen, rowsOf) {
    if (!this.enabled || !attn || srcLen === 0) return;
    const n = attn.length / srcLen;
    for (let i = 0; i < n; i++) {
      const r = rowsOf ? rowsOf[i] : i;
      this.rows[r][t] = attn.slice(i * srcLen, (i + 1) * srcLen);
    }
  }
  take(row, steps, srcLen) {
    if (!this.enabled || this.rows[row].length === 0) return null;
    return this.rows[row].slice(0, steps).map((a) => Array.from(a.subarray(0, srcLen)));
  }
  select(index) {
    if (this.enabled) this.rows = index.map((i) => this.rows[i].slice());
  }
}

/** np.argmax of _constrain's row (the first maximum) without building the row: eos alone at
 * the limit (open false), eos at -inf before min_len (blocked) -> [id, log-prob]. */
function argmaxConstrained(lp, off, vocab, open, blocked, eosId) {
  if (!open) return [eosId, lp[off + eosId]];
  let best = 0;
  let value = blocked && eosId === 0 ? -Infinity : lp[off];
  for (let v = 1; v < vocab; v++) {
    const x = lp[off + v];
    if (x > value && !(blocked && v === eosId)) { value = x; best = v; }
  }
  return [best, value];
}

/** Argmax decoding of B sentences at once (seqkit.search.greedy); one hypothesis per sentence. */
export async function greedy(fn, src, lengths, { bosId, eosId, maxLen, minLen = 0, returnAttention = false }) {
  const batch = src.length;
  if (batch === 0) return [];
  const limits = maxLen.slice();
  const steps = Math.max(...limits) + 1;
  let { memory, state } = await fn.start(src, lengths);
  const srcLen = Math.max(...lengths);
  const vocab = fn.vocabSize;
  const tokens = Array.from({ length: batch }, () => []);
  const logProb = new Float64Array(batch);
  const outLen = new Array(batch).fill(0);
  const attnBuf = new AttnBuf(returnAttention, batch);
  let rows = Array.from({ length: batch }, (_, i) => i);
  let y = new Array(batch).fill(bosId);
  for (let t = 0; t < steps; t++) {
    // With the graph's TopK, the argmax is its first id (ties: lower id, as np.argmax), or the
    // second where the first is a blocked eos: the (N, V) rows never leave onnxruntime.
    const blocked = t < minLen;
    const out = fn.hasTopK ? await fn.stepTopK(y, memory, state, blocked ? 2 : 1, eosId) : await fn.step(y, memory, state);
    state = out.state;
    const tok = new Array(rows.length);
    const ended = [];
    const keep = [];
    for (let i = 0; i < rows.length; i++) {
      const b = rows[i];
      let best, value;
      if (fn.hasTopK) {
        const { logProbs: vals, ids, eos, k: w } = out.top;
        const c = blocked && ids[i * w] === eosId ? 1 : 0;
        [best, value] = t >= limits[b] ? [eosId, eos[i]] : [ids[i * w + c], vals[i * w + c]];
      } else {
        [best, value] = argmaxConstrained(out.logProbs, i * vocab, vocab, t < limits[b], blocked, eosId);
      }
      tok[i] = best;
      tokens[b][t] = best;
      logProb[b] += value;
      if (best === eosId) {
        outLen[b] = t;
        ended.push(i);
      } else keep.push(i);
    }
    attnBuf.write(t, out.attention, srcLen, rows);
    if (keep.length === 0) break;
    if (ended.length) {
      memory = fn.selectMemory(memory, keep);
      state = fn.selectState(state, keep);
      rows = keep.map((i) => rows[i]);
    }
    y = keep.map((i) => tok[i]);
  }
  return Array.from({ length: batch }, (_, b) => ({
    tokens: tokens[b].slice(0, outLen[b]),
    score: logProb[b],
    logProb: logProb[b],
    attention: attnBuf.take(b, outLen[b] + 1, lengths[b]),
  }));
}

class Finished {
  constructor(batch, nBest) {
    this.hyps = Array.from({ length: batch }, () => []);
    this.count = new Array(batch).fill(0);
    this.nthBest = new Array(batch).fill(NEG_INF);
    this.nBest = nBest;
  }
  add(sentence, hyp) {
    this.hyps[sentence].push(hyp);
    this.count[sentence] += 1;
    if (this.count[sentence] >= this.nBest) {
      const scores = this.hyps[sentence].map((h) => h.score).sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
      this.nthBest[sentence] = scores[this.nBest - 1];
    }
  }
  best() {
    // Array.prototype.sort is stable, as Python's sorted: equal scores keep the order found.
    return this.hyps.map((h) => h.slice().sort((a, b) => (a.score > b.score ? -1 : a.score < b.score ? 1 : 0)).slice(0, this.nBest));
  }
}

/** Candidate a before candidate b: higher score, then lower beam, then lower id
 * (np.lexsort((tok, beam, -cand))); equal -inf scores tie like any others. */
function before(s, beam, tok, s2, beam2, tok2) {
  return s > s2 || (s === s2 && (beam < beam2 || (beam === beam2 && tok < tok2)));
}

/** step_top: one step reduced to the n best continuations of each row of the constrained
 * scores -> {vals (N*w) Float64Array, ids (N*w) Int32Array, w, attention, state}. */
async function stepTop(fn, y, memory, state, n, t, rowLimits, eosId, minLen) {
  const blocked = t < minLen;
  const out = await fn.stepTopK(y, memory, state, n + (blocked ? 1 : 0), eosId);
  const { top } = out;
  const rows = y.length;
  const width = top.k;
  let w = width, vals = Float64Array.from(top.logProbs), ids = top.ids;
  if (blocked) { // eos to -inf, then a stable sort of each row, keeping the first n
    w = Math.min(n, width);
    const v2 = new Float64Array(rows * w), i2 = new Int32Array(rows * w);
    for (let r = 0; r < rows; r++) {
      const v = Array.from(vals.subarray(r * width, (r + 1) * width), (x, j) => (ids[r * width + j] === eosId ? NEG_INF : x));
      const order = v.map((_, j) => j).sort((a, b) => (v[a] > v[b] ? -1 : v[a] < v[b] ? 1 : a - b)).slice(0, w);
      order.forEach((j, c) => { v2[r * w + c] = v[j]; i2[r * w + c] = ids[r * width + j]; });
    }
    vals = v2;
    ids = i2;
  }
  for (let r = 0; r < rows; r++) {
    if (t >= rowLimits[r]) { // only eos remains, with its unblocked log-prob (max_len wins)
      vals.fill(NEG_INF, r * w, (r + 1) * w);
      vals[r * w] = top.eos[r];
      ids[r * w] = eosId;
    }
  }
  return { vals, ids, w, attention: out.attention, state: out.state };
}

/** _best_of_rows for one sentence: its K rows' w best each -> the best m, sorted. */
function bestOfRows(beamScores, vals, ids, g, k, w, m) {
  const cs = new Float64Array(m), cb = new Int32Array(m), ct = new Int32Array(m);
  let size = 0;
  for (let j = 0; j < k; j++) {
    const base = beamScores[j], off = (g * k + j) * w;
    for (let c = 0; c < w; c++) {
      const sc = base + vals[off + c], tok = ids[off + c];
      if (size === m && !before(sc, j, tok, cs[m - 1], cb[m - 1], ct[m - 1])) continue;
      let pos = size === m ? m - 1 : size++;
      while (pos > 0 && before(sc, j, tok, cs[pos - 1], cb[pos - 1], ct[pos - 1])) {
        cs[pos] = cs[pos - 1]; cb[pos] = cb[pos - 1]; ct[pos] = ct[pos - 1];
        pos--;
      }
      cs[pos] = sc; cb[pos] = j; ct[pos] = tok;
    }
  }
  return Array.from({ length: size }, (_, i) => ({ s: cs[i], beam: cb[i], tok: ct[i] }));
}

/** The n best (value desc, index asc, -inf included) of one flat candidate row, in one pass. */
function topSorted(cand, n) {
  const idx = [], val = [];
  for (let i = 0; i < cand.length; i++) {
    const x = cand[i];
    if (idx.length === n && !(x > val[n - 1])) continue; // later index loses ties
    let j = idx.length === n ? n - 1 : idx.length;
    while (j > 0 && x > val[j - 1]) j--;
    idx.splice(j, 0, i);
    val.splice(j, 0, x);
    if (idx.length > n) { idx.pop(); val.pop(); }
  }
  return { idx, val };
}

/** Block tokens that would repeat an n-gram of the row's history (seqkit.search.block_ngrams). */
function blockNgrams(row, history, n) {
  const t = history.length;
  if (n <= 0 || t === 0) return;
  if (n === 1) {
    for (const tok of history) row[tok] = NEG_INF;
    return;
  }
  if (t < n) return;
  for (let i = 0; i + n - 1 < t; i++) {
    let match = true;
    for (let j = 0; j < n - 1 && match; j++) match = history[i + j] === history[t - n + 1 + j];
    if (match) row[history[i + n - 1]] = NEG_INF;
  }
}

/** One beam step's candidates: per sentence g, its best min(2K, K*w) continuations, sorted
 * ({s: cumulative log-prob, beam, tok}) -- from the graph's top-k or from whole rows. */
async function beamCandidates(fn, b, t, rowLimits) {
  const { k, eosId, minLen, noRepeatNgramSize, useTopK } = b.opts;
  const groups = b.sent.length;
  const top = [];
  if (useTopK) {
    const out = await stepTop(fn, b.y, b.memory, b.state, 2 * k, t, rowLimits, eosId, minLen);
    for (let g = 0; g < groups; g++) top.push(bestOfRows(b.scores[g], out.vals, out.ids, g, k, out.w, Math.min(2 * k, k * out.w)));
    return { top, attention: out.attention, state: out.state };
  }
  const out = await fn.step(b.y, b.memory, b.state);
  const vocab = fn.vocabSize;
  for (let g = 0; g < groups; g++) {
    const flat = new Float64Array(k * vocab);
    for (let j = 0; j < k; j++) {
      const r = g * k + j;
      const row = constrainRow(out.logProbs, r * vocab, vocab, t, rowLimits[r], eosId, minLen);
      blockNgrams(row, b.tokens[r].slice(0, t), noRepeatNgramSize);
      for (let v = 0; v < vocab; v++) flat[j * vocab + v] = b.scores[g][j] + row[v];
    }
    const { idx, val } = topSorted(flat, Math.min(2 * k, k * vocab));
    top.push(idx.map((i, c) => ({ s: val[c], beam: Math.floor(i / vocab), tok: i % vocab })));
  }
  return { top, attention: out.attention, state: out.state };
}

/** Sentence g after step t: eos among its first K candidates finishes hypotheses; the first K
 * non-eos (argsort(is_eos, stable)[:K]) are its new beams; whether its search goes on. */
function advanceSentence(b, g, cands, t, finished, lengths, limits) {
  const { k, eosId, lengthPenalty } = b.opts;
  for (let r = 0; r < Math.min(k, cands.length); r++) {
    const c = cands[r];
    if (c.tok === eosId && Number.isFinite(c.s)) {
      const row = g * k + c.beam;
      const factor = lengthPenaltyFactor(t + 1, lengthPenalty);
      finished.add(b.sent[g], { tokens: b.tokens[row].slice(0, t), score: c.s / factor, logProb: c.s,
        attention: b.attn.take(row, t + 1, lengths[b.sent[g]]) });
    }
  }
  const pick = cands.filter((c) => c.tok !== eosId).concat(cands.filter((c) => c.tok === eosId)).slice(0, k);
  const scores = pick.map((c) => (c.tok === eosId ? NEG_INF : c.s));
  const topEos = cands[0].tok === eosId && Number.isFinite(cands[0].s);
  return { scores, tok: pick.map((c) => c.tok), parents: pick.map((c) => g * k + c.beam),
    keep: !beamDone(finished, b.sent[g], topEos, scores, t, limits[b.sent[g]], lengthPenalty) };
}

/**
 * Beam search over B sentences at once (seqkit.beam.beam_search): B*K rows per step, the best 2K
 * continuations of each sentence ranked by cumulative log-prob; eos among the first K finishes a
 * hypothesis; a sentence stops once it has n_best finished and the step's best is eos or no beam
 * can beat its n_best-th score, or at its max_len. Returns n_best hypotheses per sentence.
 */
export async function beamSearch(fn, src, lengths, opts) {
  const { beamSize: k, bosId, eosId, maxLen, minLen = 0, lengthPenalty = 1.0, nBest = 1,
    noRepeatNgramSize = 0, returnAttention = false } = opts;
  if (!(nBest >= 1 && nBest <= k)) throw new Error(`need 1 <= n_best (${nBest}) <= beam_size (${k})`);
  const batch = src.length;
  if (batch === 0) return [];
  const limits = maxLen.slice();
  const steps = Math.max(...limits) + 1;
  const srcLen = Math.max(...lengths);
  const start = await fn.start(src, lengths);
  const expand = Array.from({ length: batch * k }, (_, r) => Math.floor(r / k)); // row b*K + j: beam j of b
  const b = { // the live search: sentence of each beam group, its K scores, row histories
    opts: { k, eosId, minLen, lengthPenalty, noRepeatNgramSize, useTopK: fn.hasTopK && noRepeatNgramSize === 0 },
    memory: fn.selectMemory(start.memory, expand), state: fn.selectState(start.state, expand),
    scores: Array.from({ length: batch }, () => [0.0, ...new Array(k - 1).fill(NEG_INF)]), // only beam 0 expands at t = 0
    tokens: Array.from({ length: batch * k }, () => []), attn: new AttnBuf(returnAttention, batch * k),
    sent: Array.from({ length: batch }, (_, i) => i), y: new Array(batch * k).fill(bosId),
  };
  const finished = new Finished(batch, nBest);
  for (let t = 0; t < steps; t++) {
    const rowLimits = b.sent.flatMap((s) => new Array(k).fill(limits[s]));
    const { top, attention, state } = await beamCandidates(fn, b, t, rowLimits);
    b.state = state;
    b.attn.write(t, attention, srcLen, null);
    const next = top.map((cands, g) => advanceSentence(b, g, cands, t, finished, lengths, limits));
    if (!next.some((n) => n.keep)) break;
    const kept = next.map((n, g) => [n, g]).filter(([n]) => n.keep);
    const index = kept.flatMap(([n]) => n.parents);
    const nextY = kept.flatMap(([n]) => n.tok);
    b.tokens = index.map((i, r) => { const h = b.tokens[i].slice(0, t); h[t] = nextY[r]; return h; });
    b.attn.select(index);
    b.state = fn.selectState(b.state, index);
    if (kept.length < next.length) b.memory = fn.selectMemory(b.memory, kept.flatMap(([, g]) => Array.from({ length: k }, (_, j) => g * k + j)));
    b.scores = kept.map(([n]) => n.scores);
    b.sent = kept.map(([, g]) => b.sent[g]);
    b.y = nextY;
  }
  return finished.best();
}

/** _beam_done for one sentence: true when its search is over after step t. */
function beamDone(finished, s, topEos, alive, t, limit, alpha) {
  const bestAlive = Math.max(...alive);
  // log-probs only fall: the best reachable normalized score divides by the largest factor
  // over the lengths still possible (t + 2 .. limit + 1); the factor is monotone in length.
  const factor = Math.max(lengthPenaltyFactor(t + 2, alpha), lengthPenaltyFactor(limit + 1, alpha));
  const unbeatable = finished.nthBest[s] >= bestAlive / factor;
  const enough = finished.count[s] >= finished.nBest;
  return (enough && (topEos || unbeatable)) || !Number.isFinite(bestAlive) || t >= limit;
}
