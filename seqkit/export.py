"""Export a trained run to ONNX for the torch-free runtime, and prove the export right.

``export_run(run_dir, out_dir)`` writes the directory described in :mod:`seqkit.runtime.format`
(graph names and dynamic axes are declared there, once): the run's task writes and verifies
its files (:meth:`seqkit.tasks.Task.export`: :mod:`seqkit.export_seq2seq` for seq2seq and
language models, :mod:`seqkit.export_classifier` for classifiers), this module checks the
options, seals the directory with its manifest and publishes it. For seq2seq models the export
verifies itself before it is published (:mod:`seqkit.export_verify`):

1. The sample inputs go through torch and through onnxruntime: every encoder output and every
   output of several decoder steps must agree within ``ATOL + RTOL * |torch|``; a failure names
   the output, the step and the max absolute difference.
2. Greedy decoding of the sample sentences through :class:`seqkit.models.TorchStepper` and the
   runtime's :class:`~seqkit.runtime.stepper.OrtStepper` must give identical ids.
3. With ``quantize="int8"`` the fp32 graphs pass 1-2 first; the int8 graphs' differences and
   greedy agreement are then only reported (int8 changes the outputs), in manifest.json.

Everything is written to a temporary sibling directory that is renamed to ``out_dir`` only
after all checks pass, so ``out_dir`` never holds a half-written or unverified model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from seqkit import __version__
from seqkit.errors import ModelError
from seqkit.runs import load_run
from seqkit.runtime import format as fmt
from seqkit.runtime import load_model
from seqkit.tasks import load_task

log = logging.getLogger("seqkit")

QUANTIZE_CHOICES = ("int8",)
SHORTLIST_MODES = ("auto", "on", "off")
MIN_OPSET = 13  # opsets 11-12 reject the int64 sequence lengths the recurrent encoders pass


def export_run(run_dir: str | Path, out_dir: str | Path, *, opset: int = 17, quantize: str | None = None,
               which: str = "best", check_sentences: list[str] | None = None, shortlist: str | None = None) -> Path:
    """Export the ``which`` checkpoint of ``run_dir`` to ``out_dir``; returns ``out_dir``.

    ``shortlist``: auto, on or off, in place of the recipe's ``export.shortlist.mode``.

    ``check_sentences``: sample inputs for the parity check (default: the run's validation
    sources, or random ids when the data cannot be read). Raises ModelError, leaving nothing
    at ``out_dir``, when export or verification fails or ``out_dir`` already holds files.
    """
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise ModelError(f"quantize: unknown '{quantize}'; choices: {', '.join(QUANTIZE_CHOICES)}")
    if opset < MIN_OPSET:
        raise ModelError(f"opset {opset} is too old; seqkit exports with opset >= {MIN_OPSET}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: already exists; remove it or choose another output directory")
    if shortlist is not None and shortlist not in SHORTLIST_MODES:
        raise ModelError(f"shortlist: unknown '{shortlist}'; choices: {', '.join(SHORTLIST_MODES)}")
    run = load_run(Path(run_dir), which, "cpu")
    if shortlist is not None:
        section = run.recipe.export.model_copy(update={"shortlist": run.recipe.export.shortlist.model_copy(
            update={"mode": shortlist})})
        run.recipe = run.recipe.model_copy(update={"export": section})
    with staging_dir(out) as tmp:
        report = load_task(run.recipe.task).export(run, tmp, opset=opset, quantize=quantize,
                                                   check_sentences=check_sentences)
        seal_and_publish(tmp, out, opset=opset, quantize=quantize, report=report)
    log.info("exported %s (%s) to %s", run.checkpoint, quantize or "fp32", out)
    return out


@contextlib.contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """A fresh hidden sibling of ``out`` to build an export in; removed if the block fails, so a
    failed export leaves nothing behind (``seal_and_publish`` moves it into place)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as exc:  # -o under a file, a read-only or full disk: one line, not a traceback
        raise ModelError(f"{out}: cannot create the output directory: {exc.strerror or exc}") from None
    try:
        yield tmp
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelError(f"{out}: cannot write the export: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def seal_and_publish(tmp: Path, out: Path, *, opset: int, quantize: str | None, report: dict[str, Any]) -> None:
    """Write the manifest (sha256 of every file), re-open the directory as the runtime will,
    then move it into place."""
    manifest = fmt.Manifest(seqkit_version=__version__, opset=opset, quantized=quantize,  # type: ignore[arg-type]
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            files=fmt.hash_files(tmp), verification=report)
    fmt.write_manifest(tmp, manifest)
    load_model(tmp, threads=1)
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
