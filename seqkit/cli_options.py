"""Options shared by the ``seqkit`` commands, each spelled once (docs/cli.md): ``--set`` for
recipe values, ``--checkpoint``, ``--device``, the search and sampling options, and their
checks. Torch-free; imports of seqkit's own modules stay inside the functions that need them
so that ``seqkit --help`` stays fast."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from seqkit.errors import InputError
from seqkit.search import check_option

STRATEGIES = ("greedy", "beam", "sample")  # SearchConfig.strategy's choices (a test keeps them equal)
LENGTH_NORMS = ("wu", "avg", "none")  # SearchConfig.length_norm's
COVERAGE_PENALTIES = ("none", "wu", "summary")  # SearchConfig.coverage_penalty's

set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help="Set a recipe value before validation, e.g. --set train.max_time=5m (the value is parsed as "
         "YAML); repeatable.",
)
checkpoint_option = click.option(
    "--checkpoint", "which", default="best", show_default=True, type=click.Choice(["best", "last"]),
    help="Which checkpoint of a run directory: the best validation score or the latest.")


def device_option(what: str) -> Callable[[Any], Any]:
    return click.option(
        "--device", default="cpu", show_default=True, metavar="DEVICE",
        help=f"Where {what} runs: cpu, cuda, cuda:N, mps or auto. A run directory decodes with torch; an "
             "exported model with onnxruntime, whose CUDA provider (onnxruntime-gpu) serves cuda.")


SAMPLING_OPTIONS = [
    click.option("--temperature", type=float, default=None,
                 help="Sampling: divide the logits by this before sampling; below 1 is more conservative "
                      "(default: the model's search.temperature, 1.0)."),
    click.option("--top-k", type=int, default=None,
                 help="Sampling: draw from the k most probable tokens only (default: the model's; 0: off)."),
    click.option("--top-p", type=float, default=None,
                 help="Sampling: draw from the smallest set of tokens holding this probability mass "
                      "(default: the model's; 1: off)."),
    click.option("--seed", type=int, default=None,
                 help="Sampling: the same seed gives the same output, torch and onnxruntime alike "
                      "(default: fresh randomness)."),
]
SEARCH_OPTIONS = [
    click.option("--strategy", type=click.Choice(STRATEGIES), default=None,
                 help="greedy, beam search or sampling (default: the model's search.strategy; a --beam-size "
                      "given alone picks greedy for 1 and beam otherwise)."),
    click.option("--beam-size", type=click.IntRange(min=1), default=None,
                 help="Hypotheses kept per step by beam search (default: the model's search.beam_size)."),
    click.option("--n-best", type=click.IntRange(min=1), default=None,
                 help="Hypotheses printed per input line, best first, as line<TAB>rank<TAB>log_prob<TAB>"
                      "score<TAB>text rows, N per line, empty lines too (at most --beam-size; default 1)."),
    click.option("--length-penalty", type=float, default=None,
                 help="Beam search ranks by log_prob / ((5 + length) / 6) ** ALPHA (GNMT); 0 ranks by the "
                      "raw log-probability (default: the model's search.length_penalty)."),
    click.option("--length-norm", type=click.Choice(LENGTH_NORMS), default=None,
                 help="Beam search's length normalization: wu (GNMT, with --length-penalty), avg (divide by the "
                      "length) or none (default: the model's search.length_norm, wu)."),
    click.option("--coverage-penalty", type=click.Choice(COVERAGE_PENALTIES), default=None,
                 help="Beam search's coverage penalty: wu (GNMT), summary, or none; needs attention and "
                      "--coverage-beta > 0 (default: the model's search.coverage_penalty, none)."),
    click.option("--coverage-beta", type=float, default=None,
                 help="Weight of the coverage penalty (default: the model's search.coverage_beta)."),
    click.option("--min-len", type=click.IntRange(min=0), default=None,
                 help="Greedy and beam search: no eos before this many tokens (default: the model's search.min_len)."),
    click.option("--no-repeat-ngram-size", type=click.IntRange(min=0), default=None,
                 help="Beam search never repeats an n-gram of this size; 0: off (default: the model's "
                      "search.no_repeat_ngram_size)."),
    *SAMPLING_OPTIONS,
]


def with_options(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def apply(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f
    return apply


def search_overrides(strategy: str | None = None, beam_size: int | None = None, **options: Any) -> dict[str, Any]:
    """The SearchConfig fields the user gave (None: keep the model's), each checked against its
    own constraints with its flag named; n_best against beam_size when both are given."""
    given = {k: v for k, v in {"strategy": strategy, "beam_size": beam_size, **options}.items() if v is not None}
    for name, value in given.items():
        check_option(name, value, "--" + name.replace("_", "-"))
    if given.get("n_best", 1) > given.get("beam_size", given.get("n_best", 1)):
        raise InputError(f"--n-best {given['n_best']} is more than --beam-size {given['beam_size']}: beam search "
                         "keeps only --beam-size hypotheses")
    return given


def with_implied_strategy(overrides: dict[str, Any]) -> dict[str, Any]:
    """A --beam-size given alone picks the strategy: greedy for 1, beam otherwise."""
    if "beam_size" in overrides and "strategy" not in overrides:
        return {**overrides, "strategy": "greedy" if overrides["beam_size"] == 1 else "beam"}
    return overrides
