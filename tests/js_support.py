"""Helpers for the tests of the JavaScript runtime (js/): find node and the npm dependencies,
run js/bin/seqkit-js.mjs. Tests skip, saying why, only where node (or, for the browser,
chromium) is not installed. With node and npm present and js/node_modules missing (a fresh
clone: the README's test command as pasted), the first test installs the pinned dependencies
itself with `npm ci --prefix js` (bounded; .ci/run runs it beforehand too); an install that
fails is a test failure that says why."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js"
NODE_CLI = JS / "bin" / "seqkit-js.mjs"
NODE = shutil.which("node")
NEEDED = ("onnxruntime-node", "onnxruntime-web", "@sctg/sentencepiece-js")


def require_node() -> str:
    """The node binary, with js/node_modules installed; skips the module where node is missing."""
    if NODE is None:
        pytest.skip("the JavaScript runtime tests need Node.js (node not found on PATH)", allow_module_level=True)
    missing = [name for name in NEEDED if not (JS / "node_modules" / name / "package.json").is_file()]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"js/node_modules lacks {missing[0]} and npm is not installed", allow_module_level=True)
        install_js_dependencies(npm, missing[0])
    return NODE


def install_js_dependencies(npm: str, lacking: str) -> None:
    """`npm ci --prefix js` (the versions js/package-lock.json pins); a failure fails the test."""
    try:
        done = subprocess.run([npm, "ci", "--prefix", str(JS), "--no-audit", "--no-fund"], capture_output=True,
                              text=True, timeout=600, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"js/node_modules lacks {lacking}; `npm ci --prefix js` did not finish in 600 s", pytrace=False)
    still = [name for name in NEEDED if not (JS / "node_modules" / name / "package.json").is_file()]
    if done.returncode != 0 or still:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        pytest.fail(f"js/node_modules lacks {lacking}; `npm ci --prefix js` failed (exit {done.returncode}): "
                    + " | ".join(tail), pytrace=False)


def node_translate(model_dir: Path, lines: list[str], *options: str, json_out: bool = True,
                   timeout: float = 300) -> subprocess.CompletedProcess:
    """`seqkit-js translate MODEL_DIR [options]` with ``lines`` on stdin (one thread)."""
    argv = [NODE or "node", str(NODE_CLI), "translate", str(model_dir), "--threads", "1", *options]
    if json_out:
        argv.append("--json")
    text = "".join(line + "\n" for line in lines)
    return subprocess.run(argv, input=text.encode("utf-8"), capture_output=True, timeout=timeout, check=False)


def node_results(model_dir: Path, lines: list[str], *options: str) -> list[dict]:
    proc = node_translate(model_dir, lines, *options)
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]


def node_eval(script: str, timeout: float = 120) -> str:
    """Run an ES module snippet with js/ as the working directory (imports like ./src/x.js)."""
    proc = subprocess.run([NODE or "node", "--input-type=module", "-e", script], cwd=JS, capture_output=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode("utf-8")
