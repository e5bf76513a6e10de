"""The ``seqkit`` command line (click). Everything imported here is torch-free, so ``seqkit
--help``, ``seqkit plugins`` and the commands on exported models work without torch; ``train``,
``export`` and ``average`` cross into torch inside the command.

One spelling per concept across commands (docs/cli.md): ``-o/--output`` is always a file or
directory the command writes; recipe values are set with ``--set``; the beam is ``--beam-size``,
as in the Python and HTTP APIs and the recipe's ``search.beam_size``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from seqkit import __version__, registry
from seqkit.devices import torch_device
from seqkit.errors import InputError, SeqkitError
from seqkit.evaluate import (
    LineModel,
    evaluate_ensemble_split,
    evaluate_files,
    evaluate_run,
    is_classifier,
    is_exported,
    open_generator,
    open_step_model,
)
from seqkit.openmp import set_thread_wait
from seqkit.plot import plot_curves, plot_first_attention
from seqkit.progress import configure_logging
from seqkit.recipe import dump_recipe, load_recipe
from seqkit.rundir import EMA_FILE, MODEL_FILE
from seqkit.runtime.format import verify_manifest
from seqkit.score import score_pairs
from seqkit.serve import serve
from seqkit.serve.schemas import ServeLimits
from seqkit.tasks import entry
from seqkit.textio import line_chunks, open_output, read_aligned, read_lines
from seqkit.web import write_site

from seqkit.cli_options import (  # noqa: F401 - STRATEGIES and search_overrides are part of seqkit.cli's API
    SAMPLING_OPTIONS,
    SEARCH_OPTIONS,
    STRATEGIES,
    checkpoint_option,
    device_option,
    search_overrides,
    set_option,
    with_implied_strategy,
    with_options,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="seqkit")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging on stderr.")
def cli(verbose: bool) -> None:
    """seqkit: recurrent sequence-to-sequence models from recipe to torch-free runtime."""
    configure_logging(verbose)


@cli.command()
def plugins() -> None:
    """List installed plugins: kind, name, distribution, version, status."""
    installed = registry.default_registry()
    rows = [("KIND", "NAME", "DISTRIBUTION", "VERSION", "STATUS")]
    for info in installed.all():
        error = installed.check(info)
        rows.append((info.kind, info.name, info.distribution, info.version, "ok" if error is None else f"broken: {error}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        click.echo("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4])


@cli.group()
def recipe() -> None:
    """Inspect recipes."""


@recipe.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@set_option
def recipe_check(path: Path, overrides: tuple[str, ...]) -> None:
    """Validate PATH and print the resolved recipe (every default filled in)."""
    click.echo(dump_recipe(load_recipe(path, list(overrides))), nl=False)


@cli.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@set_option
@click.option("--resume", is_flag=True,
              help="Continue the run in the recipe's run_dir (or the run directory given as RECIPE) from its "
                   "last checkpoint.")
def train(recipe_path: Path, overrides: tuple[str, ...], resume: bool) -> None:
    """Train a model from RECIPE (or continue a run directory with --resume)."""
    # The torch boundary: training needs torch (seqkit[train]); main() names the extra if it is missing.
    from seqkit.runs import train_run

    metrics = train_run(recipe_path, list(overrides), resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the metrics; print them once
        click.echo(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}))


@cli.command()
@click.argument("model_dirs", metavar="MODEL...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, type=click.Choice(["valid", "test"]),
              help="The recipe's data split to score (a run directory without --src).")
@click.option("--src", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Score on this source file instead of a recipe split (any model, exported ones included).")
@click.option("--ref", "refs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Reference file, one line per --src line (labels for a classifier); repeat it for "
                   "multi-reference BLEU.")
@checkpoint_option
@click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
              help="greedy, beam search or sampling (default: the model's search.strategy; a --beam-size "
                   "given alone picks greedy for 1 and beam otherwise).")
@click.option("--beam-size", type=click.IntRange(min=1), default=None,
              help="Hypotheses kept per step by beam search (default: the model's search.beam_size).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the hypotheses to this file, one per line (default: none).")
@device_option("decoding")
def evaluate(model_dirs: tuple[Path, ...], split: str, src: Path | None, refs: tuple[Path, ...], which: str,
             strategy: str | None, beam_size: int | None, output: Path | None, device: str) -> None:
    """Score MODEL and print one JSON object: BLEU/chrF (translation), ROUGE (summarization),
    accuracy/macro-F1 (classification) or loss/bits per char (language model), with the metric
    signatures. MODEL is a run directory (its recipe's --split, or --src/--ref files) or an
    exported model (--src/--ref files). Several MODELs decode as an ensemble (as in translate);
    without --src the first one, a run directory, supplies the split."""
    overrides = search_overrides(strategy=strategy, beam_size=beam_size)
    model_dir = model_dirs[0]
    if src is not None:
        result = evaluate_files(list(model_dirs), src, list(refs), overrides=with_implied_strategy(overrides),
                                device=device, output=output, which=which)
    elif refs:
        raise InputError("--ref needs --src: the source file the references translate")
    elif is_exported(model_dir):
        raise InputError(f"{model_dir}: an exported model carries no data splits; give --src FILE --ref FILE")
    elif len(model_dirs) > 1:
        result = evaluate_ensemble_split(list(model_dirs), split=split, which=which,
                                         overrides=with_implied_strategy(overrides), output=output, device=device)
    else:
        torch_device(device)
        result = evaluate_run(model_dir, split=split, which=which, beam_size=beam_size, strategy=strategy,
                              output=output, device=device)
    click.echo(json.dumps(result, indent=1))


@cli.command()
@click.argument("model_dirs", metavar="MODEL_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-i", "--input", "input_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read lines from this file (default: stdin, answered line by line as it arrives).")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the output lines to this file (default: stdout).")
@with_options(SEARCH_OPTIONS)
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Lines per model call (default: the model's search.batch_size, 32).")
@click.option("--scores", is_flag=True,
              help="Prefix each output line with its scores and tabs: the label's probability (0-1), or the "
                   "translation's log_prob and score (docs/cli.md). With --n-best they are always there.")
@device_option("decoding")
@click.option("--attention-plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the source x target attention heat map of the first non-empty line as PNG (needs matplotlib).")
@click.option("--alignments", is_flag=True,
              help="Append ' ||| ' and, per output token, the source token it attended to most, as Pharaoh "
                   "'j-t' pairs (0-based model tokens; docs/cli.md).")
@click.option("--shortlist/--no-shortlist", default=None,
              help="An exported model: decode over its vocabulary shortlist, or the full vocabulary "
                   "(default: as its export decided; docs/export.md).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batches decoded at once, one thread each, the CPU cores shared among them: faster "
                   "for many lines on several cores (docs/cli.md). Sampling decodes one at a time.")
def translate(model_dirs: tuple[Path, ...], input_path: Path | None, output_path: Path | None, batch_size: int | None,
              scores: bool, device: str, attention_plot: Path | None, alignments: bool, shortlist: bool | None,
              workers: int, **search: Any) -> None:
    """Translate, summarize or classify lines with MODEL_DIR: a run directory (torch) or an
    exported model (onnxruntime).

    Prints one line per input line: the translation, the headline (summarization) or the label
    (classification). An empty input line gives an empty output line. Input from a terminal or
    a pipe is answered as it arrives; what is already waiting is decoded in one batch.

    Several MODEL_DIRs of one target vocabulary decode as an ensemble (their step
    log-probabilities averaged; run directories and exports may be mixed); the first one's
    tokenizers and search settings apply.
    """
    overrides = search_overrides(**search)
    model_dir = model_dirs[0]
    if overrides and is_classifier(model_dir):
        flags = ", ".join("--" + k.replace("_", "-") for k in overrides)
        raise InputError(f"{flags}: search options do not apply to a classification model")
    model = LineModel(list(model_dirs), with_implied_strategy(overrides), batch_size=batch_size, device=device,
                      attention=attention_plot is not None, alignments=alignments, shortlist=shortlist,
                      workers=workers)
    chunks = [(1, read_lines(input_path))] if attention_plot is not None else line_chunks(input_path)
    with open_output(output_path) as out:
        for first_line, lines in chunks:
            rows = model.output_lines(lines, first_line, scores)
            if attention_plot is not None:
                plot_first_attention(lines, model.last_results, model.translator, attention_plot)
            out.writelines(row + "\n" for row in rows)
            out.flush()
    # Warnings (truncated lines) were already logged to stderr by the Translator/TextClassifier, one per line.


@cli.command("export")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "model_dir", required=True, type=click.Path(path_type=Path),
              help="The exported model directory to create (must not exist or be empty).")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: seqkit.export's, 17).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Dynamic int8 quantization of the weights (default: none, fp32).")
@click.option("--shortlist", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Vocabulary shortlist (default: the recipe's export.shortlist.mode, auto: on when it costs "
                   "at most export.shortlist.max_bleu_loss validation BLEU; docs/export.md).")
@checkpoint_option
def export_model(run_dirs: tuple[Path, ...], model_dir: Path, opset: int | None, quantize: str | None,
                 shortlist: str | None, which: str) -> None:
    """Export RUN_DIR to ONNX for the torch-free runtime; verifies parity with torch first.

    Several RUN_DIRs (run directories, or models already exported) of one target vocabulary
    make one ensemble directory, which translate, evaluate, serve and load_model open like a
    single model (docs/export.md, "Ensembles")."""
    options = {"quantize": quantize, "which": which, **({"opset": opset} if opset else {})}
    if len(run_dirs) > 1:
        # The torch boundary: an ensemble member given as a run directory is exported with torch.
        from seqkit.export_ensemble import export_ensemble

        out = export_ensemble(list(run_dirs), model_dir, **options)
    else:
        # The torch boundary: export traces the torch model.
        from seqkit.export import export_run

        out = export_run(run_dirs[0], model_dir, shortlist=shortlist, **options)
    manifest = verify_manifest(out)
    click.echo(json.dumps({"model_dir": str(out), "files": sorted(manifest.files),
                           "verification": manifest.verification}, indent=1))


@cli.command("web")
@click.argument("model_dir", metavar="MODEL_DIR", type=click.Path(path_type=Path))
@click.option("-o", "--output", "site_dir", required=True, type=click.Path(path_type=Path),
              help="The static site to create (must not exist or be empty).")
def web_site(model_dir: Path, site_dir: Path) -> None:
    """Write a static site that translates with MODEL_DIR in the browser (docs/web.md)."""
    click.echo(str(write_site(model_dir, site_dir)))


@cli.command("score")
@click.argument("model_dir", metavar="MODEL", type=click.Path(path_type=Path))
@click.option("--src", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Source lines (seq2seq models; a language model takes --tgt alone).")
@click.option("--tgt", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The lines to score: one per --src line, or the text lines of a language model.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the scores to this file (default: stdout).")
@click.option("--format", "fmt", type=click.Choice(["tsv", "jsonl"]), default="tsv", show_default=True,
              help="tsv: log_prob, tokens, normalized (LM: log_prob, tokens, chars, bits_per_char) per line; "
                   "jsonl: one object per line with those fields and the line number.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Lines per model call.")
@checkpoint_option
@device_option("scoring")
def score(model_dir: Path, src: Path | None, tgt: Path, output: Path | None, fmt: str, batch_size: int,
          which: str, device: str) -> None:
    """Forced decoding: the log-probability MODEL gives each --tgt line (given its --src line),
    its token count and per-token mean; bits per character for a language model. The same
    numbers from a run directory (torch) and its export (onnxruntime)."""
    fn, src_tok, tgt_tok, task, search = open_step_model(model_dir, device, which)
    sources = None
    if entry(task).front_end == "generator":  # a language model: the lines alone
        if src is not None:
            raise InputError("--src: a language model scores --tgt lines alone")
        targets = read_lines(tgt)
    elif src is None:
        raise InputError(f"--src is required: a {task} model scores each --tgt line given its source line")
    else:
        sources, (targets,) = read_aligned(src, [tgt], "one target per source line")
    scored = score_pairs(fn, src_tok, tgt_tok, sources, targets, max_input_len=search.max_input_len,
                         batch_size=batch_size)
    with open_output(output) as out:
        for i, s in enumerate(scored, 1):
            fields = {"log_prob": round(s.log_prob, 6), "tokens": s.tokens}
            fields.update({"chars": s.chars, "bits_per_char": round(s.bits_per_char, 6)} if sources is None
                          else {"normalized": round(s.normalized, 6)})
            out.write(json.dumps({"line": i, **fields}) + "\n" if fmt == "jsonl"
                      else "\t".join(str(v) for v in fields.values()) + "\n")


@cli.command("average")
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--last", type=click.IntRange(min=1), default=None,
              help="Average the last N saved checkpoints of each run directory given (default: all it kept).")
@click.option("--steps", default=None, metavar="N,N,...",
              help="Average the checkpoints saved at these steps (one run directory).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The run directory to create for the averaged weights (must not exist or be empty).")
@click.option("--ema", is_flag=True,
              help="Use the checkpoints' moving averages (train.ema) instead of their raw weights; "
                   "one checkpoint is enough (--last 1).")
def average(sources: tuple[Path, ...], last: int | None, steps: str | None, output: Path, ema: bool) -> None:
    """Average the weights of checkpoints: SOURCES are run directories or their checkpoint
    directories (RUN/checkpoints/step-N). The result is a run directory that evaluate,
    translate and export open like any other."""
    # The torch boundary: averaging reads and writes torch tensors.
    from seqkit.average import average_run, expand_sources

    try:
        chosen = [int(s) for s in steps.split(",")] if steps else None
    except ValueError:
        raise InputError(f"--steps: expected comma-separated step numbers, got {steps[:40]!r}") from None
    weights = EMA_FILE if ema else MODEL_FILE
    out = average_run(expand_sources(list(sources), last=last, steps=chosen, at_least=1 if ema else 2),
                      output, weights=weights)
    click.echo(json.dumps({"run_dir": str(output), "checkpoint": out.name,
                           "averaged": json.loads((out / "state.json").read_text())["averaged_from"]}, indent=1))


@cli.command()
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option("--prompt", default="", help="Text to continue (default: the model's start token).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Tokens to generate, characters for a char LM (default: the model's search.max_len).")
@with_options(SAMPLING_OPTIONS)
@checkpoint_option
@device_option("sampling")
def generate(model_dir: Path, prompt: str, max_tokens: int | None, temperature: float | None, top_k: int | None,
             top_p: float | None, seed: int | None, which: str, device: str) -> None:
    """Sample text from a language model: MODEL_DIR is a run directory (torch) or an exported model (onnxruntime)."""
    overrides = search_overrides(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    generator = open_generator(model_dir, overrides, which, device)
    click.echo(generator.generate(prompt, max_tokens=max_tokens))


@cli.command("serve")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port to listen on.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="onnxruntime intra-op threads (default: onnxruntime's, one per physical core).")
@click.option("--max-batch", type=click.IntRange(min=1), default=None, help="Texts per /v1/translate request (default 64).")
@click.option("--max-chars", type=click.IntRange(min=1), default=None, help="Characters per text or prompt (default 2000).")
@click.option("--max-queue", type=click.IntRange(min=1), default=None,
              help="Requests waiting for the model before new ones get 503 (default 256).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="Server log verbosity (uvicorn's levels).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="Answer only requests whose Host header is NAME (repeatable; default: any).")
def serve_model(model_dir: Path, host: str, port: int, threads: int | None, max_batch: int | None,
                max_chars: int | None, max_queue: int | None, log_level: str, allowed_hosts: tuple[str, ...]) -> None:
    """Serve an exported MODEL_DIR over HTTP (torch-free): a demo page at /, the API under /v1,
    the OpenAPI schema at /openapi.json. See docs/serving.md."""
    given = {"max_batch": max_batch, "max_chars": max_chars, "max_queue": max_queue}
    limits = None
    if any(v is not None for v in given.values()):
        limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})
    serve(model_dir, host=host, port=port, threads=threads, limits=limits, log_level=log_level,
          allowed_hosts=list(allowed_hosts) or None)


@cli.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write (default: RUN_DIR/curves.png).")
def plot_run(run_dir: Path, output: Path | None) -> None:
    """Plot the loss and metric curves of RUN_DIR (from its metrics.jsonl) as one PNG."""
    click.echo(str(plot_curves(run_dir, output or run_dir / "curves.png")))


# Optional dependencies and the extra that installs each: a command whose import fails on one
# of these says which extra it needs instead of printing a traceback.
_EXTRA_OF = {**dict.fromkeys(["torch", "datasets", "safetensors", "onnx", "sacrebleu", "rouge_score", "tqdm"], "train"),
             "fastapi": "serve", "uvicorn": "serve", "matplotlib": "plot"}


def main() -> None:
    # How OpenMP threads wait: a short spin on an idle machine, sleep on a busy one
    # (seqkit.openmp). libgomp reads it when torch loads, so this comes first.
    set_thread_wait()
    try:
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:  # one line, like every other error; usage errors keep status 2
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if isinstance(exc, click.UsageError) and ctx else ""
        click.echo(f"error: {exc.format_message()}{hint}", err=True)
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
    except BrokenPipeError:  # `seqkit translate ... | head`: the reader left; nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
