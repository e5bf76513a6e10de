"""`seqkit web MODEL_DIR -o SITE_DIR`: the static site's layout, and the models it refuses to
publish (tampered, not seq2seq) with one `error:` line. The browser itself: test_web_e2e.py."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from js_support import require_node
from test_cli import seqkit
from test_export import export_tiny

from seqkit.runtime.format import verify_manifest
from seqkit.web import RUNTIME_FILES, VENDOR_FILES

require_node()  # the site copies onnxruntime-web and sentencepiece out of js/node_modules


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return export_tiny(tmp_path_factory.mktemp("web"), enc="gru", dec="gru", attention="luong-general")[1]


def test_web_writes_the_documented_site(model_dir, tmp_path):
    site = tmp_path / "site"
    proc = seqkit("web", str(model_dir), "-o", str(site))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(site)
    files = {p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()}
    manifest = verify_manifest(site / "model")  # the model travels whole, its manifest still holds
    assert {f"model/{name}" for name in manifest.files} | {"model/manifest.json"} <= files
    assert {f"seqkit/{name}" for name in RUNTIME_FILES} <= files and set(VENDOR_FILES) <= files
    page = (site / "index.html").read_text(encoding="utf-8")
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', page).group(1))["imports"]
    assert all((site / target).is_file() for target in imports.values())
    assert '<script type="module" src="seqkit/page.js">' in page
    for element in ("source", "strategy", "beam", "run", "output", "attention", "error", "model-name", "status"):
        assert f'id="{element}"' in page
    # No temporary sibling is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_web_refuses_a_tampered_model(model_dir, tmp_path):
    model = Path(shutil.copytree(model_dir, tmp_path / "model"))
    with open(model / "decoder_step.onnx", "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    proc = seqkit("web", str(model), "-o", str(tmp_path / "site"))
    assert proc.returncode == 1 and not (tmp_path / "site").exists()
    assert proc.stderr == (f"error: {model / 'decoder_step.onnx'}: sha256 mismatch with manifest.json; "
                           "the file is corrupt or was modified\n")


def test_web_refuses_a_language_model_and_a_full_output(model_dir, tmp_path):
    _, lm_dir = export_tiny(tmp_path / "lm", task="lm", dec="gru")
    proc = seqkit("web", str(lm_dir), "-o", str(tmp_path / "site"))
    assert proc.returncode == 1
    assert proc.stderr == (f"error: {lm_dir / 'config.json'}: a lm model (lm); the browser runtime translates "
                           "seq2seq models (translation, summarization) only\n")
    full = tmp_path / "full"
    full.mkdir()
    (full / "index.html").write_text("keep me")
    proc = seqkit("web", str(model_dir), "-o", str(full))
    assert proc.returncode == 1 and proc.stderr == f"error: {full}: exists and is not an empty directory\n"
    assert (full / "index.html").read_text() == "keep me"


def test_serve_hands_over_the_site_of_its_model(model_dir, monkeypatch, tmp_path):
    """`seqkit serve` serves the same site under /browser/ (only its files, with the isolation
    headers), and says so in /v1/model; without the JS runtime it does neither."""
    pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
    from fastapi.testclient import TestClient

    from seqkit.runtime import load_model
    from seqkit.serve.app import create_app

    model = load_model(model_dir, threads=1)
    with TestClient(create_app(model)) as client:
        assert client.get("/v1/model").json()["browser"] is True
        page = client.get("/browser/")
        assert page.status_code == 200 and '<script type="module" src="seqkit/page.js">' in page.text
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert client.get("/browser/model/manifest.json").content == (model_dir / "manifest.json").read_bytes()
        wasm = client.get("/browser/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
        assert wasm.headers["content-type"] == "application/wasm" and wasm.content[:4] == b"\0asm"
        for path in ("/browser/model/../config.json", "/browser/model/%2e%2e/recipe.yaml", "/browser/nothing.js"):
            assert client.get(path).status_code == 404
    monkeypatch.setenv("SEQKIT_JS_DIR", str(tmp_path / "no-js"))
    with TestClient(create_app(model)) as client:
        assert client.get("/v1/model").json()["browser"] is False
        assert client.get("/browser/").status_code == 404
