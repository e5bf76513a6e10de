"""The ``seqkit`` command line (click). Heavy imports happen inside commands, so
``seqkit --help`` and ``seqkit plugins`` stay fast and work without torch."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import click

from seqkit import __version__
from seqkit.errors import SeqkitError

override_option = click.option(
    "-o", "--override", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help="Set a recipe value before validation (value parsed as YAML); repeatable.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqkit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool) -> None:
    """seqkit: recurrent sequence-to-sequence models from recipe to torch-free runtime."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)


@cli.command()
def plugins() -> None:
    """List installed plugins: kind, name, distribution, version, status."""
    from seqkit.registry import default_registry

    registry = default_registry()
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS")]
    for info in registry.all():
        error = registry.check(info)
        rows.append((info.kind, info.name, info.distribution, info.version, "ok" if error is None else f"broken: {error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


@cli.group()
def recipe() -> None:
    """Inspect recipes."""


@recipe.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@override_option
def recipe_check(path: Path, overrides: tuple[str, ...]) -> None:
    """Validate PATH and print the resolved recipe (every default filled in)."""
    from seqkit.recipe import dump_recipe, load_recipe

    click.echo(dump_recipe(load_recipe(path, list(overrides))), nl=False)


@cli.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@override_option
@click.option("--resume", is_flag=True, help="Continue the run in the recipe's run_dir from its last checkpoint.")
def train(recipe_path: Path, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a model from RECIPE (or continue a run directory with --resume)."""
    from seqkit.runs import train_run

    metrics = train_run(recipe_path, list(overrides), resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the metrics; print them once
        click.echo(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}))


@cli.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(["valid", "test"]))
@click.option("--checkpoint", "which", default="best", show_default=True, type=click.Choice(["best", "last"]))
@click.option("--beam", type=int, default=None, help="Beam size (default: the recipe's search.beam_size).")
@click.option("--strategy", type=click.Choice(["greedy", "beam"]), default=None)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Write hypotheses to this file.")
@click.option("--device", default="cpu", show_default=True)
def evaluate(run_dir: Path, split: str, which: str, beam: int | None, strategy: str | None,
             output: Path | None, device: str) -> None:
    """Score a run on a data split (BLEU/chrF, ROUGE or loss) and print JSON."""
    from seqkit.evaluate import evaluate_run

    result = evaluate_run(run_dir, split=split, which=which, beam=beam, strategy=strategy, output=output, device=device)
    click.echo(json.dumps(result, indent=1))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Default: stdin.")
@click.option("-O", "--output", "output_path", type=click.Path(path_type=Path), default=None, help="Default: stdout.")
@click.option("--beam", type=int, default=None, help="Beam size; 1 means greedy.")
@click.option("--strategy", type=click.Choice(["greedy", "beam", "sample"]), default=None)
@click.option("--n-best", type=int, default=None)
@click.option("--length-penalty", type=float, default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Lines per model call.")
@click.option("--scores", is_flag=True,
              help="Prefix each output line with a score and a tab: the label's probability (0-1), or the "
                   "translation's search score.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--attention-plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the source x target attention heat map of the first non-empty line as PNG (needs matplotlib).")
def translate(model_dir: Path, input_path: Path | None, output_path: Path | None, beam: int | None,
              strategy: str | None, n_best: int | None, length_penalty: float | None,
              batch_size: int | None, scores: bool, device: str, attention_plot: Path | None) -> None:
    """Translate, summarize or classify lines with MODEL_DIR: a run directory (torch) or an
    exported model (onnxruntime).

    Prints one line per input line: the translation, the headline (summarization) or the label
    (classification). An empty input line gives an empty output line.
    """
    from seqkit.evaluate import is_classifier, open_classifier, open_translator

    search_flags = {"--beam": beam, "--strategy": strategy, "--n-best": n_best, "--length-penalty": length_penalty}
    if is_classifier(model_dir):
        if attention_plot is not None:
            raise click.UsageError("--attention-plot: a classification model has no source x target attention")
        used = [flag for flag, value in search_flags.items() if value is not None]
        if used:
            raise click.UsageError(f"{', '.join(used)}: search options do not apply to a classification model")
        classifier = open_classifier(model_dir, batch_size=batch_size, device=device)
        labelled = classifier.classify(_read_lines(input_path))
        rows = [(r.probability, r.label) for r in labelled]
    else:
        options = {"beam_size": beam, "strategy": strategy, "n_best": n_best,
                   "length_penalty": length_penalty, "batch_size": batch_size}
        if beam is not None and strategy is None:
            options["strategy"] = "greedy" if beam == 1 else "beam"
        translator = open_translator(model_dir, {k: v for k, v in options.items() if v is not None}, device=device)
        lines = _read_lines(input_path)
        results = translator.translate(lines, return_attention=attention_plot is not None)
        if attention_plot is not None:
            _attention_plot(lines, results, translator, attention_plot)
        if n_best and n_best > 1:  # every hypothesis, scored
            rows, scores = [(score, text) for res in results for text, score in res.n_best], True
        else:
            rows = [(res.score, res.text) for res in results]
    with _open_output(output_path) as out:
        for score, text in rows:
            out.write(f"{score:.4f}\t{text}\n" if scores else text + "\n")
    # Warnings (truncated lines) were already logged to stderr by the Translator/TextClassifier, one per line.


def _read_lines(input_path: Path | None) -> list[str]:
    """The lines of ``input_path`` (default: stdin), split on "\\n" only; SeqkitError if not UTF-8.

    Only "\\n" ends a line: a stray "\\r" (or U+2028, form feed, ...) inside a line must not
    split it, or the output would hold more lines than the input (clean_text makes it a space).
    """
    try:  # stdin is read as bytes: UTF-8 whatever the locale says
        data = input_path.read_bytes() if input_path else sys.stdin.buffer.read()
    except OSError as exc:
        raise SeqkitError(f"{input_path}: cannot read: {exc.strerror or exc}") from None
    lines, offset = data.split(b"\n"), 0
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line does not start another
    out = []
    for number, raw in enumerate(lines, 1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SeqkitError(f"{input_path or 'stdin'}: line {number}: not UTF-8 text "
                              f"({exc.reason} at byte {offset + exc.start})") from None
        offset += len(raw) + 1
    return out


@contextlib.contextmanager
def _open_output(output_path: Path | None) -> Iterator[TextIO]:
    """``output_path`` for writing (complete or untouched: a temp file renamed at the end), or
    stdout as UTF-8 text (left open); flushed either way."""
    if output_path is not None:
        tmp = output_path.with_name(f".{output_path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                yield out
            os.replace(tmp, output_path)
        except OSError as exc:
            raise SeqkitError(f"{output_path}: cannot write output: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return
    sys.stdout.flush()
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    try:
        yield out
    finally:
        out.flush()
        out.detach()


@cli.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(path_type=Path),
              help="The exported model directory to create (must not exist or be empty).")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: seqkit.export's, 17).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None, help="Dynamic int8 quantization of the weights.")
@click.option("--checkpoint", "which", default="best", show_default=True, type=click.Choice(["best", "last"]))
def export_model(run_dir: Path, model_dir: Path, opset: int | None, quantize: str | None, which: str) -> None:
    """Export RUN_DIR to ONNX for the torch-free runtime; verifies parity with torch first."""
    from seqkit.export import export_run
    from seqkit.runtime.format import verify_manifest

    out = export_run(run_dir, model_dir, quantize=quantize, which=which, **({"opset": opset} if opset else {}))
    manifest = verify_manifest(out)
    click.echo(json.dumps({"model_dir": str(out), "files": sorted(manifest.files),
                           "verification": manifest.verification}, indent=1))


def _sampling_overrides(**options: float | int | None) -> dict[str, float | int]:
    """Validate sampling options with SearchConfig's own constraints (torch-free)."""
    from pydantic import ValidationError

    from seqkit.search import SearchConfig

    given = {k: v for k, v in options.items() if v is not None}
    try:
        SearchConfig.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.BadParameter(first["msg"], param_hint=f"--{str(first['loc'][0]).replace('_', '-')}") from None
    return given


def _open_generator(model_dir: Path, overrides: dict[str, float | int], which: str, device: str) -> object:
    """A Generator over an exported language model (onnxruntime) or a run directory (torch)."""
    from seqkit.errors import CheckpointError
    from seqkit.evaluate import is_exported

    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no such model or run directory")
    if is_exported(model_dir):
        from seqkit.runtime import load_model

        return load_model(model_dir).generator(**overrides)
    import torch

    from seqkit.classify import is_classification_run
    from seqkit.inference import Generator
    from seqkit.models import TorchStepper
    from seqkit.runs import load_run

    if is_classification_run(model_dir):
        raise CheckpointError(f"{model_dir}: a classification model does not generate from a prompt; "
                              "use `seqkit translate`")
    run = load_run(model_dir, which, device)
    if run.recipe.task != "lm":
        raise CheckpointError(f"{model_dir}: a {run.recipe.task} model does not generate from a prompt; use `seqkit translate`")
    return Generator(TorchStepper(run.model, torch.device(device)), run.tgt_tok,
                     run.recipe.search.model_copy(update=overrides))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="Text to continue (default: the model's start token).")
@click.option("--max-chars", "max_tokens", type=click.IntRange(min=1), default=None,
              help="Tokens to generate: characters for a char LM (default: the recipe's search.max_len).")
@click.option("--temperature", type=float, default=None)
@click.option("--top-k", type=int, default=None, help="Sample from the k most probable tokens (0: off).")
@click.option("--top-p", type=float, default=None, help="Nucleus sampling mass (1: off).")
@click.option("--seed", type=int, default=None, help="Same seed, same text (torch and onnxruntime alike).")
@click.option("--checkpoint", "which", default="best", show_default=True, type=click.Choice(["best", "last"]),
              help="Run directories only.")
@click.option("--device", default="cpu", show_default=True, help="Run directories only.")
def generate(model_dir: Path, prompt: str, max_tokens: int | None, temperature: float | None, top_k: int | None,
             top_p: float | None, seed: int | None, which: str, device: str) -> None:
    """Sample text from a language model: MODEL_DIR is a run directory (torch) or an exported model (onnxruntime)."""
    overrides = _sampling_overrides(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    generator = _open_generator(model_dir, overrides, which, device)
    click.echo(generator.generate(prompt, max_tokens=max_tokens))  # type: ignore[attr-defined]


def _attention_plot(lines: list[str], results: list, translator: object, path: Path) -> None:
    """The attention heat map of the first non-empty line (see seqkit.plot)."""
    from seqkit.plot import attention_labels, plot_attention

    chosen = next(((line, r) for line, r in zip(lines, results) if r.src_tokens), None)
    if chosen is None:
        raise SeqkitError("--attention-plot: no non-empty input line to plot")
    line, result = chosen
    if result.attention is None:
        raise SeqkitError("--attention-plot: this model has no attention (its decoder's attention is 'none')")
    src, tgt = attention_labels(result, translator.src_tokenizer, translator.tgt_tokenizer)  # type: ignore[attr-defined]
    plot_attention(result.attention, src, tgt, path, title=f"{line.strip()}\n→ {result.text}")
    logging.getLogger("seqkit").info("attention heat map written to %s", path)


@cli.command("serve")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime intra-op threads (default: onnxruntime's, one per physical core).")
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Texts per /v1/translate request (default 64).")
@click.option("--max-chars", type=click.IntRange(min=1), default=None, help="Characters per text or prompt (default 2000).")
@click.option("--max-queue", type=click.IntRange(min=1), default=None,
              help="Requests waiting for the model before new ones get 503 (default 256).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True)
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Answer only requests whose Host header is NAME (repeatable; default: any).")
def serve_model(model_dir: Path, host: str, port: int, threads: int | None, max_batch: int | None,
                max_chars: int | None, max_queue: int | None, log_level: str, allowed_hosts: tuple[str, ...]) -> None:
    """Serve an exported MODEL_DIR over HTTP (torch-free): a demo page at /, the API under /v1,
    the OpenAPI schema at /openapi.json. See docs/serving.md."""
    from seqkit.serve import serve

    given = {"max_batch": max_batch, "max_chars": max_chars, "max_queue": max_queue}
    limits = None
    if any(v is not None for v in given.values()):
        from seqkit.serve.schemas import ServeLimits

        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})
    serve(model_dir, host=host, port=port, threads=threads, limits=limits, log_level=log_level,
          allowed_hosts=list(allowed_hosts) or None)


@cli.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: RUN_DIR/curves.png).")
def plot_run(run_dir: Path, output: Path | None) -> None:
    """Plot the loss and metric curves of RUN_DIR (from its metrics.jsonl) as one PNG."""
    from seqkit.plot import plot_curves

    click.echo(str(plot_curves(run_dir, output or run_dir / "curves.png")))


# Optional dependencies and the extra that installs each: a command whose import fails on one
# of these says which extra it needs instead of printing a traceback.
_EXTRA_OF = {**dict.fromkeys(["torch", "datasets", "safetensors", "onnx", "sacrebleu", "rouge_score", "tqdm"], "train"),
             "fastapi": "serve", "uvicorn": "serve", "matplotlib": "plot"}


def main() -> None:
    # Idle OpenMP threads spin by default. On a machine shared with other busy processes that
    # spinning made training steps 3-10x slower (measured, docs/benchmarks.md); sleeping
    # threads cost little when the machine is otherwise idle. Must be set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except SeqkitError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except ModuleNotFoundError as exc:
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            raise
        click.echo(f"error: this command needs seqkit[{extra}] ({exc.name} is not installed): "
                   f"pip install 'seqkit[{extra}]'" + (" (torch==2.13.0 first)" if extra == "train" else ""), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
