"""``seqkit web MODEL_DIR -o SITE_DIR``: a static site that translates in the browser.

The site is the exported model, the JavaScript runtime (``js/src/``: the manifest check, the
encoder and step graphs on onnxruntime-web's WASM backend, the tokenizers, greedy and beam search)
and a page that looks like the ``seqkit serve`` page, attention heat map included. Any static file
server can publish it; nothing runs on the server (docs/web.md)::

    SITE_DIR/index.html                     the page (an import map names the vendored modules)
    SITE_DIR/seqkit/*.js                    the runtime, from js/src/
    SITE_DIR/vendor/onnxruntime-web/        ort.wasm.min.mjs and its WASM binary (from js/node_modules)
    SITE_DIR/vendor/sentencepiece-js/       sentencepiece compiled to WASM (from js/node_modules)
    SITE_DIR/vendor/shims/                  empty stand-ins for the Node modules it imports
    SITE_DIR/model/                         the exported model, manifest.json included

The JavaScript dependencies come from the npm registry, pinned by js/package-lock.json:
``npm ci --prefix js`` in a seqkit checkout installs them. Imports no torch.
"""

from __future__ import annotations

import html
import os
import shutil
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from seqkit.errors import ModelError, SeqkitError
from seqkit.runtime.format import MANIFEST_FILE, read_config, verify_manifest
from seqkit.serve.page import STYLE

JS_DIR_ENV = "SEQKIT_JS_DIR"
RUNTIME_FILES = ("browser.js", "format.js", "model.js", "page.js", "search.js", "sha256.js", "stepper.js", "tokenizers.js")
ORT_DIST = "node_modules/onnxruntime-web/dist"
VENDOR_FILES = {
    "vendor/onnxruntime-web/ort.wasm.min.mjs": f"{ORT_DIST}/ort.wasm.min.mjs",
    "vendor/onnxruntime-web/ort-wasm-simd-threaded.mjs": f"{ORT_DIST}/ort-wasm-simd-threaded.mjs",
    "vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm": f"{ORT_DIST}/ort-wasm-simd-threaded.wasm",
    "vendor/sentencepiece-js/index.js": "node_modules/@sctg/sentencepiece-js/dist/index.js",
}
# The sentencepiece build imports Node's fs (to read a model from a path) and the buffer
# package (for base64 models); the runtime hands it bytes, so in a browser neither is used.
SHIMS = {
    "vendor/shims/fs.js": b"export function readFileSync() { throw new Error('no file system in a browser'); }\n",
    "vendor/shims/buffer.js": b"export const Buffer = globalThis.Buffer;\n",
}
IMPORT_MAP = ('{"imports": {"onnxruntime-web": "./vendor/onnxruntime-web/ort.wasm.min.mjs", '
              '"@sctg/sentencepiece-js": "./vendor/sentencepiece-js/index.js", '
              '"fs": "./vendor/shims/fs.js", "buffer": "./vendor/shims/buffer.js"}}')
# Headers a server must send for onnxruntime-web to use more than one thread (SharedArrayBuffer).
ISOLATION_HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
               ".wasm": "application/wasm", ".json": "application/json"}

PAGE_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
{style}  #status {{ color: #666; font-size: 13px; }}
</style>
<script type="importmap">{import_map}</script>
</head>
<body>
<h1>seqkit</h1>
<p id="model-name">loading the model into this browser&hellip;</p>
<label for="source">Text to translate (one per line)</label>
<textarea id="source" rows="4" autofocus></textarea>
<div class="row">
  <label>search <select id="strategy"><option value="beam">beam</option><option value="greedy">greedy</option></select></label>
  <label>beam size <input id="beam" type="number" min="1" max="16" value="5" style="width:4rem"></label>
  <button id="run" type="button" disabled>Run</button>
</div>
<div id="output" aria-live="polite"></div>
<div id="error" role="alert"></div>
<p id="status"></p>
<div id="attention"></div>
<script type="module" src="seqkit/page.js"></script>
</body>
</html>
"""


def js_dir() -> Path:
    """The checkout's js/ folder ($SEQKIT_JS_DIR overrides), with its npm dependencies installed."""
    root = Path(os.environ.get(JS_DIR_ENV) or Path(__file__).resolve().parents[1] / "js")
    if not (root / "src" / "model.js").is_file():
        raise SeqkitError(f"{root}: the JavaScript runtime is not there (set {JS_DIR_ENV} to a seqkit checkout's js/ folder)")
    for rel in VENDOR_FILES.values():
        if not (root / rel).is_file():
            raise SeqkitError(f"{root / rel}: missing; install the JavaScript dependencies first: npm ci --prefix {root}")
    return root


def site_files(model_dir: Path, js_root: Path | None = None) -> dict[str, Path | bytes]:
    """Site path -> source file (or content) for the site of ``model_dir``, whose manifest is
    checked first: a tampered model is never published. Only seq2seq models decode in JS."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory")
    root = js_root or js_dir()  # before hashing the model: `seqkit serve` asks without the JS runtime too
    manifest = verify_manifest(model_dir)
    config = read_config(model_dir)
    if config.model_kind != "seq2seq":
        raise ModelError(f"{model_dir / 'config.json'}: a {config.task} model ({config.model_kind}); the browser "
                         "runtime translates seq2seq models (translation, summarization) only")
    files: dict[str, Path | bytes] = {f"seqkit/{name}": root / "src" / name for name in RUNTIME_FILES}
    files.update({dest: root / src for dest, src in VENDOR_FILES.items()})
    files.update(SHIMS)
    files.update({f"model/{name}": model_dir / name for name in [*manifest.files, MANIFEST_FILE]})
    title = html.escape(f"seqkit · {Path(os.path.abspath(model_dir)).name}")  # the name given, not a link target
    files["index.html"] = PAGE_TEMPLATE.format(title=title, style=STYLE, import_map=IMPORT_MAP).encode("utf-8")
    return files


def write_site(model_dir: Path, out_dir: Path, js_root: Path | None = None) -> Path:
    """Write the static site of ``model_dir`` to ``out_dir`` (which must not exist or be empty),
    through a temporary sibling renamed at the end, as export does."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SeqkitError(f"{out_dir}: exists and is not an empty directory")
    files = site_files(model_dir, js_root)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for rel, source in files.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                dest.write_bytes(source)
            else:
                shutil.copyfile(source, dest)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def preview_server(site_dir: Path, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A static file server for ``site_dir`` that sends the cross-origin isolation headers
    (so onnxruntime-web may use every core); ``port`` 0 picks a free one. Call serve_forever()."""

    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MEDIA_TYPES}

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(site_dir), **kwargs)

        def end_headers(self) -> None:
            for name, value in ISOLATION_HEADERS.items():
                self.send_header(name, value)
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

    return ThreadingHTTPServer((host, port), Handler)
