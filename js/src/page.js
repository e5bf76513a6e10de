// The static site's page (`seqkit web`): the serve page's form and attention heat map, decoding
// with the JavaScript runtime in this tab. Element ids as in seqkit/serve/page.py, plus "status".
// window.seqkit exposes the loaded model to tests and tools/bench_js.py.

import { availableThreads, loadModelUrl } from "./browser.js";

const $ = (id) => document.getElementById(id);

function heatmap(labels, weights) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (const s of labels.src) { const th = document.createElement("th"); th.textContent = s; head.appendChild(th); }
  const body = table.createTBody();
  weights.forEach((row, t) => {
    const tr = body.insertRow();
    const th = document.createElement("th"); th.textContent = labels.tgt[t]; tr.appendChild(th);
    row.forEach((w, s) => {
      const td = tr.insertCell();
      td.style.background = `rgba(21, 101, 192, ${w.toFixed(3)})`;
      td.title = `${labels.tgt[t]} \u2190 ${labels.src[s]}: ${w.toFixed(3)}`;
    });
  });
  return table;
}

async function run(model) {
  $("error").textContent = ""; $("attention").replaceChildren(); $("run").disabled = true;
  $("output").dataset.state = "busy";
  try {
    const options = { strategy: $("strategy").value, returnAttention: model.config.has_attention };
    if (options.strategy === "beam") options.beam_size = parseInt($("beam").value, 10);
    const start = performance.now();
    const results = await model.translate($("source").value.split("\n"), options);
    $("output").textContent = results.map((r) => r.text).join("\n");
    $("status").textContent = `${results.length} line(s) in ${Math.round(performance.now() - start)} ms, ` +
      `${model.threads} thread(s), in this browser`;
    const first = results.find((r) => r.attention);
    if (first) {
      const caption = document.createElement("p");
      caption.textContent = "Attention (first text): rows = target tokens, columns = source tokens";
      $("attention").append(caption, heatmap(model.labels(first), first.attention));
    }
    $("output").dataset.state = "done";
  } catch (err) {
    $("error").textContent = `error: ${err.message || err}`;
    $("output").dataset.state = "error";
  } finally {
    $("run").disabled = false;
  }
}

async function init() {
  const params = new URLSearchParams(location.search);
  const threads = parseInt(params.get("threads") || "0", 10) || availableThreads();
  try {
    $("status").textContent = "checking the model files against manifest.json\u2026";
    const model = await loadModelUrl("model/", { threads });
    const cfg = model.config;
    $("model-name").textContent = `${document.title} \u2014 ${cfg.task}${cfg.has_attention ? ", attention" : ""}` +
      `${cfg.quantized ? ", " + cfg.quantized : ""} \u2014 runs in this browser`;
    if (cfg.search.strategy === "greedy") $("strategy").value = "greedy";
    $("beam").value = cfg.search.beam_size;
    $("status").textContent = `ready: onnxruntime-web (WASM), ${model.threads} thread(s)`;
    $("run").disabled = false;
    $("run").addEventListener("click", () => run(model));
    $("source").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(model); });
    window.seqkit = { model, translate: (lines, options) => model.translate(lines, options) };
    document.body.dataset.state = "ready";
  } catch (err) {
    $("model-name").textContent = "the model could not be loaded";
    $("status").textContent = "";
    $("error").textContent = `error: ${err.message || err}`;
    document.body.dataset.state = "error";
  }
}

init();
