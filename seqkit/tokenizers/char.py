"""Character tokenizer: one token per Unicode code point (char-rnn style).

Round trip: ``decode(encode(x)) == x`` (``x.lower()`` with ``lowercase``) for every text whose
characters are all in the vocabulary; other characters encode to unk and decode as ``⁇``.
Newlines and spaces are ordinary characters, so a whole document can be one "sentence".
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from seqkit.tokenizers.base import VocabTokenizer


class CharTokenizer(VocabTokenizer):
    """Characters seen at least ``min_freq`` times in training, most frequent first."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        min_freq: int = Field(default=1, ge=1)  # rarer characters become unk
        max_vocab: int | None = Field(default=None, gt=4)  # cap incl. the 4 specials; None = no cap
        lowercase: bool = False  # lowercase before encoding (decode cannot restore case)

    type_name = "char"

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.config.lowercase else text)

    def detokenize(self, tokens: list[str]) -> str:
        return "".join(tokens)
