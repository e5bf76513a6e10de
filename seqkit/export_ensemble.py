"""``seqkit export A B ... -o DIR``: several models of one target vocabulary as one exported
directory (layout: :mod:`seqkit.runtime.format`, "An exported ensemble") that ``load_model``,
``seqkit translate``, ``evaluate`` and ``serve`` open like a single model.

Each source is a run directory (exported here, with the same options as a single export) or an
exported model (copied after its manifest is checked). The directory is built beside ``DIR``
and moved into place only after it has been re-opened as the runtime will, so a failure (an
export that does not verify, members of different vocabularies) leaves nothing at ``DIR``.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from seqkit.errors import ModelError
from seqkit.export import export_run, seal_and_publish, staging_dir
from seqkit.runtime import format as fmt

log = logging.getLogger("seqkit")


def export_ensemble(sources: list[Path], out: Path, *, opset: int = 17, quantize: str | None = None,
                    which: str = "best") -> Path:
    if len(sources) < 2:
        raise ModelError("an ensemble needs at least two models")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelError(f"{out}: already exists; remove it or choose another output directory")
    tasks = []
    with staging_dir(out) as tmp:
        names = []
        for i, source in enumerate(sources, 1):
            member = tmp / f"member-{i}"
            if fmt.is_ensemble(source):
                raise ModelError(f"{source}: an ensemble cannot be a member of another; give its members")
            if (source / fmt.MANIFEST_FILE).is_file():
                fmt.verify_manifest(source)
                shutil.copytree(source, member)
            else:
                # an ensemble decodes over the full vocabulary (its members' shortlists differ)
                export_run(source, member, opset=opset, quantize=quantize, which=which, shortlist="off")
            config = fmt.read_config(member)
            if config.model_kind != "seq2seq":
                raise ModelError(f"{source}: a {config.task} model cannot be an ensemble member "
                                 "(ensembles decode translation and summarization models)")
            names.append(member.name)
            tasks.append(config.task)
        if len(set(tasks)) > 1:
            raise ModelError(f"ensemble members have different tasks ({', '.join(sorted(set(tasks)))})")
        spec = fmt.EnsembleSpec(task=tasks[0], members=names)  # type: ignore[arg-type]
        (tmp / fmt.ENSEMBLE_FILE).write_text(spec.model_dump_json(indent=1) + "\n", encoding="utf-8")
        quantized = {json.loads((tmp / n / fmt.MANIFEST_FILE).read_text())["quantized"] for n in names}
        report = {"members": {n: str(s) for n, s in zip(names, sources)}}
        seal_and_publish(tmp, out, opset=opset, quantize=quantized.pop() if len(quantized) == 1 else None,
                         report=report)
    log.info("exported an ensemble of %d models to %s", len(sources), out)
    return out
