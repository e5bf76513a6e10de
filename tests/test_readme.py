"""The README's two commands are what CI runs: the marked blocks exist and say what they must."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks_module():
    spec = importlib.util.spec_from_file_location("readme_blocks", ROOT / "tools" / "readme_blocks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_marks_the_setup_and_test_commands():
    blocks = _blocks_module()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = blocks.readme_block(text, "setup")
    assert setup.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && ")
    assert setup.endswith("seqkit train recipes/translate.yaml")
    # One pip call for seqkit, another for the plugins: pip 23.2 cannot resolve them together.
    installs = [part.strip() for part in setup.split("&&") if part.strip().startswith("pip install")]
    assert installs[0] == "pip install torch==2.13.0" and len(installs) == 3
    assert "plugins/" not in installs[1] and installs[2].startswith("pip install ./plugins/")
    assert blocks.readme_block(text, "test") == "python -m pytest -q"


def test_ci_runs_the_marked_blocks_and_fails_without_them(tmp_path):
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "readme_blocks.py README.md setup" in ci and "readme_blocks.py README.md test" in ci
    assert "pip install" not in ci.split("readme_blocks.py README.md test", 1)[1]  # no paraphrase after
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n\n```bash\npython -m pytest -q\n```\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "readme_blocks.py"), str(readme), "test"],
                          capture_output=True, text=True)
    assert done.returncode == 1 and done.stderr.startswith("error: README.md: expected exactly one")
    with pytest.raises(ValueError, match="must be followed by a fenced code block"):
        _blocks_module().readme_block("<!-- ci:test -->\nno block\n", "test")
