"""Word tokenizer: tokens are the matches of a regular expression.

The default pattern ``\\S+`` splits on whitespace, so ``decode(encode(x)) == " ".join(x.split())``
for in-vocabulary words: runs of whitespace become one space. A pattern that splits
punctuation off (e.g. ``\\w+|[^\\w\\s]``) is not invertible: decode joins tokens with single
spaces ("Hello, world" -> "Hello , world"). Text the pattern does not match is dropped.
"""

from __future__ import annotations

import re
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqkit.tokenizers.base import VocabTokenizer

# A pattern that splits punctuation into its own tokens, for recipes that want it.
PUNCT_PATTERN = r"\w+|[^\w\s]"


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
                raise ValueError(f"invalid regular expression {value!r}: {exc}") from exc
            if compiled.fullmatch(""):
                raise ValueError(f"pattern {value!r} matches the empty string; tokens must be non-empty")
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
