"""Word tokenizer: tokens are the matches of a regular expression.

The default pattern ``\\S+`` splits on whitespace, so ``decode(encode(x)) == " ".join(x.split())``
for in-vocabulary words: runs of whitespace become one space. A pattern that splits
punctuation off (e.g. ``\\w+|[^\\w\\s]``) is not invertible: decode joins tokens with single
spaces ("Hello, world" -> "Hello , world"). Text the pattern does not match is dropped.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqkit.errors import shorten
from seqkit.tokenizers.base import VocabTokenizer

try:  # the parser behind re.compile: read the pattern's structure without matching anything
    from re import _parser as sre_parse  # Python >= 3.11
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse  # type: ignore[no-redef]

_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT}
# Possessive quantifiers and atomic groups never backtrack into what they matched (3.11+).
_NO_BACKTRACK = {getattr(sre_parse, name) for name in ("POSSESSIVE_REPEAT", "ATOMIC_GROUP") if hasattr(sre_parse, name)}

# A pattern that splits punctuation into its own tokens, for recipes that want it.
PUNCT_PATTERN = r"\w+|[^\w\s]"


def backtracks(pattern: str) -> bool:
    """Whether ``pattern`` holds a quantifier or alternation under an unbounded quantifier
    (``(a+)+``, ``(a|aa)*``): the shapes that make Python's backtracking engine exponential.
    A user pattern runs on every line of the corpus and of every request, so such patterns are
    refused rather than given a time bound the ``re`` module cannot enforce."""
    return _nested(sre_parse.parse(pattern), False)


def _nested(items: Any, under_repeat: bool) -> bool:
    for op, av in items:
        if op in _NO_BACKTRACK:
            continue
        if op in _REPEATS:
            lo, hi, sub = av
            if under_repeat:
                return True
            if _nested(sub, hi == sre_parse.MAXREPEAT or hi > 1):
                return True
        elif op == sre_parse.BRANCH:
            if under_repeat or any(_nested(alt, False) for alt in av[1]):
                return True
        elif op == sre_parse.SUBPATTERN:
            if _nested(av[-1], under_repeat):
                return True
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT) and _nested(av[1], under_repeat):
            return True
    return False


class WordTokenizer(VocabTokenizer):
    """Words seen at least ``min_freq`` times in training, most frequent first."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        pattern: str = r"\S+"  # regex whose matches are tokens; r"\S+" = split on whitespace
        min_freq: int = Field(default=1, ge=1)  # rarer words become unk
        max_vocab: int | None = Field(default=None, gt=4)  # cap incl. the 4 specials; None = no cap
        lowercase: bool = False  # lowercase before splitting (decode cannot restore case)

        @field_validator("pattern")
        @classmethod
        def _compiles(cls, value: str) -> str:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {shorten(value)}: {exc}") from None
            if compiled.fullmatch(""):
                raise ValueError(f"pattern {shorten(value)} matches the empty string; tokens must be non-empty")
            if backtracks(value):
                raise ValueError(f"pattern {shorten(value)} nests a quantifier or an alternation inside an unbounded "
                                 "quantifier, which can take exponential time on some lines (e.g. '(a|aa)+b'); "
                                 "rewrite it, or make the outer quantifier possessive ('++', '*+')")
            return value

    type_name = "word"

    def __init__(self, config: Config, tokens: Sequence[str]):
        super().__init__(config, tokens)
        self._regex = re.compile(config.pattern)

    def tokenize(self, text: str) -> list[str]:
        # group(0), not findall: a pattern with groups would otherwise yield the groups.
        text = text.lower() if self.config.lowercase else text
        return [m.group(0) for m in self._regex.finditer(text)]

    def detokenize(self, tokens: list[str]) -> str:
        return " ".join(tokens)
