"""``check_tokenizer``: a tokenizer plugin against :class:`seqkit.contracts.Tokenizer`.

Imports no torch, and checks that the plugin's module does not either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from pydantic import BaseModel

from seqkit.contracts import Tokenizer
from seqkit.errors import PluginError
from seqkit.registry import default_registry
from seqkit.testing._common import build_config, fail, label_of

__all__ = ["check_tokenizer"]


def check_tokenizer(cls: type, texts: Sequence[str], config: BaseModel | dict[str, Any] | None = None,
                    *, torch_free: bool = True) -> Tokenizer:
    """Train ``cls`` on ``texts`` and check encode/decode, specials, save/load and torch-freedom.

    Checked for every text: ``encode`` gives a list of ints in ``[0, vocab_size)`` without bos/eos;
    ``decode`` skips pad/bos/eos; ``decode(encode(.))`` is stable for texts without unknown tokens
    (a second round trip changes nothing); the tokenizer saved to a directory (``tokenizer.json`` with a ``type``) loads back
    with equal ids, decodes and vocabulary. ``torch_free``: importing the plugin's module in a
    fresh interpreter does not import torch.
    """
    label = label_of("tokenizer", cls)
    texts = list(texts)
    if not texts:
        raise ValueError("check_tokenizer needs at least one training text")
    cfg = build_config(cls, config)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        tok = cls.train(texts, cfg, workdir)
        _check_tokenizer_basics(label, tok, texts)
        saved = Path(tmp) / "saved"
        tok.save(saved)
        _check_tokenizer_json(label, saved, cls)
        _check_tokenizer_reload(label, tok, cls.load(saved), texts)
    if torch_free:
        _check_imports_no_torch(label, cls.__module__)
    return tok


def _check_tokenizer_basics(label: str, tok: Any, texts: list[str]) -> None:
    if not isinstance(tok, Tokenizer):
        missing = [a for a in ("pad_id", "unk_id", "bos_id", "eos_id", "vocab_size", "encode", "decode", "save", "load")
                   if not hasattr(tok, a)]
        fail(label, f"train() returned {type(tok).__name__}, which lacks {', '.join(missing)}")
    specials = {"pad_id": tok.pad_id, "unk_id": tok.unk_id, "bos_id": tok.bos_id, "eos_id": tok.eos_id}
    vocab = tok.vocab_size
    if not isinstance(vocab, int) or vocab <= 0:
        fail(label, f"vocab_size must be a positive int, got {vocab!r}")
    for name, value in specials.items():
        if not isinstance(value, int) or not 0 <= value < vocab:
            fail(label, f"{name} must be an int in [0, vocab_size={vocab}), got {value!r}")
    if len(set(specials.values())) != 4:
        fail(label, f"special ids must be distinct, got {specials}")
    for i, text in enumerate(texts):
        ids = tok.encode(text)
        where = f"texts[{i}] = {text[:40]!r}"
        if not isinstance(ids, list) or not all(type(x) is int for x in ids):
            fail(label, f"{where}: encode must return a list of Python ints, got {type(ids).__name__} {ids[:8]!r}")
        bad = [x for x in ids if not 0 <= x < vocab]
        if bad:
            fail(label, f"{where}: encode gave ids outside [0, {vocab}): {bad[:8]}")
        if tok.bos_id in ids or tok.eos_id in ids:
            fail(label, f"{where}: encode must not add bos/eos (the model adds them), got {ids[:12]}")
        text_out = tok.decode(ids)
        if not isinstance(text_out, str):
            fail(label, f"{where}: decode must return str, got {type(text_out).__name__}")
        framed = tok.decode([tok.bos_id, *ids, tok.eos_id, tok.pad_id, tok.pad_id])
        if framed != text_out:
            fail(label, f"{where}: decode must skip bos/eos/pad: {framed!r} != {text_out!r}")
        again = tok.decode(tok.encode(text_out))
        # How unk prints is the tokenizer's choice (and may not re-encode to unk): skip those.
        if tok.unk_id not in ids and again != text_out:
            fail(label, f"{where}: round trip is not stable: decode(encode({text_out!r})) = {again!r}")


def _check_tokenizer_json(label: str, directory: Path, cls: type) -> None:
    path = directory / "tokenizer.json"
    if not path.is_file():
        fail(label, f"save() must write {path.name} into the directory; found {sorted(p.name for p in directory.iterdir())}")
    payload = json.loads(path.read_text(encoding="utf-8"))
    name = payload.get("type") if isinstance(payload, dict) else None
    if not isinstance(name, str):
        fail(label, f"{path.name} must be a JSON object with a string 'type' (the entry-point name)")
    info = default_registry().available("tokenizer").get(name)
    if info is None:  # not installed yet (a plugin under development): nothing to compare
        return
    try:
        registered = default_registry().get("tokenizer", name)
    except PluginError as exc:
        fail(label, f"{path.name} names type '{name}', whose entry point does not load: {exc}")
    if registered is not cls:
        fail(label, f"{path.name} names type '{name}', but that entry point resolves to {info.value}")


def _check_tokenizer_reload(label: str, tok: Any, loaded: Any, texts: list[str]) -> None:
    if loaded.vocab_size != tok.vocab_size:
        fail(label, f"load(save(tok)) has vocab_size {loaded.vocab_size}, the original {tok.vocab_size}")
    for attr in ("pad_id", "unk_id", "bos_id", "eos_id"):
        if getattr(loaded, attr) != getattr(tok, attr):
            fail(label, f"load(save(tok)).{attr} = {getattr(loaded, attr)}, the original {getattr(tok, attr)}")
    for i, text in enumerate(texts):
        ids = tok.encode(text)
        if loaded.encode(text) != ids:
            fail(label, f"texts[{i}] = {text[:40]!r}: the reloaded tokenizer encodes differently: "
                         f"{loaded.encode(text)[:12]} vs {ids[:12]}")
        if loaded.decode(ids) != tok.decode(ids):
            fail(label, f"texts[{i}]: the reloaded tokenizer decodes differently")


def _check_imports_no_torch(label: str, module: str) -> None:
    code = f"import importlib, sys; importlib.import_module({module!r}); print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    if result.returncode != 0:
        fail(label, f"importing {module} in a fresh interpreter failed:\n{result.stderr[-2000:]}")
    if result.stdout.strip() != "False":
        fail(label, f"importing {module} imports torch; tokenizers must be torch-free (the runtime loads them)")
