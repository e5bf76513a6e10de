"""The demo page served at ``/``: one self-contained HTML file (no external scripts, fonts or
styles, so it works offline). It asks ``/v1/model`` what the model is, then shows a translate
form (seq2seq, with the attention heat map as a table) or a generate form (language model).

Element ids are part of the contract with tests/test_serve_e2e.py: ``source``, ``strategy``,
``beam``, ``run``, ``output``, ``attention``, ``error``, ``model-name``, ``in-browser`` (the link to
the same model decoding in the browser, shown when ``/v1/model`` says ``"browser": true``).
"""

# Shared with the static site of `seqkit web` (seqkit/web.py), so both pages look alike.
STYLE = """  body { font: 15px/1.45 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  #model-name { color: #666; margin-top: 0; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; }
  .row { display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; margin: .6rem 0; }
  button { font: inherit; padding: .35rem 1.2rem; }
  #output { white-space: pre-wrap; background: #f4f6f8; padding: .6rem; min-height: 1.5rem; border-radius: 4px; }
  #error { color: #b00020; white-space: pre-wrap; }
  #attention table { border-collapse: collapse; margin-top: 1rem; font-size: 13px; }
  #attention th { font-weight: normal; padding: 2px 4px; }
  #attention thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
  #attention tbody th { text-align: right; }
  #attention td { width: 26px; height: 22px; border: 1px solid #fff; }
  .lm-only, .s2s-only { display: none; }
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>seqkit</title>
<style>
""" + STYLE + """</style>
</head>
<body>
<h1>seqkit</h1>
<p id="model-name">loading model information&hellip;</p>
<p><a id="in-browser" href="browser/" hidden>run in this browser</a></p>
<label for="source"><span class="s2s-only">Text to translate (one per line)</span><span class="lm-only">Prompt</span></label>
<textarea id="source" rows="4" autofocus></textarea>
<div class="row">
  <span class="s2s-only">
    <label>search <select id="strategy"><option value="beam">beam</option><option value="greedy">greedy</option></select></label>
    <label>beam size <input id="beam" type="number" min="1" max="16" value="5" style="width:4rem"></label>
  </span>
  <span class="lm-only">
    <label>tokens <input id="max-tokens" type="number" min="1" value="200" style="width:5rem"></label>
    <label>temperature <input id="temperature" type="number" min="0.05" step="0.05" value="0.8" style="width:5rem"></label>
    <label>seed <input id="seed" type="number" value="1" style="width:5rem"></label>
  </span>
  <button id="run" type="button" disabled>Run</button>
</div>
<div id="output" aria-live="polite"></div>
<div id="error" role="alert"></div>
<div id="attention"></div>
<script>
"use strict";
let kind = null;
const $ = (id) => document.getElementById(id);

function show(cls, on) { for (const el of document.querySelectorAll(cls)) el.style.display = on ? "inline" : "none"; }

async function call(path, body) {
  const response = await fetch(path, {method: body ? "POST" : "GET",
    headers: body ? {"Content-Type": "application/json"} : {}, body: body ? JSON.stringify(body) : undefined});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error ? data.error.code + ": " + data.error.message : response.statusText);
  return data;
}

function heatmap(att) {
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (const s of att.src_tokens) { const th = document.createElement("th"); th.textContent = s; head.appendChild(th); }
  const body = table.createTBody();
  att.weights.forEach((row, t) => {
    const tr = body.insertRow();
    const th = document.createElement("th"); th.textContent = att.tgt_tokens[t]; tr.appendChild(th);
    row.forEach((w, s) => {
      const td = tr.insertCell();
      td.style.background = "rgba(21, 101, 192, " + w.toFixed(3) + ")";
      td.title = att.tgt_tokens[t] + " \\u2190 " + att.src_tokens[s] + ": " + w.toFixed(3);
    });
  });
  return table;
}

async function run() {
  $("error").textContent = ""; $("attention").replaceChildren(); $("run").disabled = true;
  $("output").dataset.state = "busy";
  try {
    if (kind === "seq2seq") {
      const texts = $("source").value.split("\\n");
      const strategy = $("strategy").value;
      const body = {texts, strategy, attention: true};
      if (strategy === "beam") body.beam_size = parseInt($("beam").value, 10);
      const data = await call("/v1/translate", body);
      $("output").textContent = data.translations.map((t) => t.text).join("\\n");
      const first = data.translations.find((t) => t.attention);
      if (first) {
        const caption = document.createElement("p");
        caption.textContent = "Attention (first text): rows = target tokens, columns = source tokens";
        $("attention").append(caption, heatmap(first.attention));
      }
    } else {
      const data = await call("/v1/generate", {prompt: $("source").value,
        max_tokens: parseInt($("max-tokens").value, 10), temperature: parseFloat($("temperature").value),
        seed: parseInt($("seed").value, 10)});
      $("output").textContent = data.text;
    }
    $("output").dataset.state = "done";
  } catch (err) {
    $("error").textContent = String(err.message || err);
    $("output").dataset.state = "error";
  } finally {
    $("run").disabled = false;
  }
}

async function init() {
  try {
    const info = await call("/v1/model");
    kind = info.config.model_kind;
    $("model-name").textContent = info.name + " \\u2014 " + info.config.task + (info.config.has_attention ? ", attention" : "");
    show(".s2s-only", kind === "seq2seq"); show(".lm-only", kind === "lm");
    const search = info.config.search || {};
    if (search.strategy === "greedy") $("strategy").value = "greedy";
    if (search.beam_size) $("beam").value = search.beam_size;
    $("beam").max = info.limits.max_beam_size;
    $("in-browser").hidden = !info.browser;
    $("run").disabled = false;
  } catch (err) {
    $("error").textContent = "cannot read /v1/model: " + err.message;
  }
}

$("run").addEventListener("click", run);
$("source").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
init();
</script>
</body>
</html>
"""
