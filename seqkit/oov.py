"""The pointer-generator's extended vocabulary (``model.decoder.copy_oov``; numpy-free, torch-free).

With ``copy_source`` alone a source word outside the vocabulary reaches the copy layer as unk, so
copying it can only emit unk (``search.replace_unk`` then guesses the word from the attention).
With ``copy_oov`` each sentence numbers its own unknown source words: the k-th distinct one gets
id ``V + k`` (V = vocabulary size, k < S, the source length). The model reads such an id as unk
(its embeddings only cover V), while the copy layer scatters its attention onto column ``V + k``
of a (V + S)-wide output, so the search can emit the word itself, and training teaches it to: a
target word outside the vocabulary that also occurs in its source is the target id ``V + k``.

Training, validation, export verification and :class:`seqkit.inference.Translator` (torch and
onnxruntime alike) all extend ids here, from the tokenizer's own token strings (a word or char
tokenizer: ``tokenize`` and ``encode`` align one to one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqkit.errors import ModelError


class Extended:
    """One sentence's source ids in the extended vocabulary and its unknown words (index k = id V + k)."""

    __slots__ = ("ids", "words")

    def __init__(self, ids: list[int], words: list[str]):
        self.ids, self.words = ids, words


def check_tokenizer(tokenizer: Any, key: str = "model.decoder.copy_oov") -> None:
    """The extended ids come from token strings: the tokenizer must split text into vocabulary tokens."""
    if not (hasattr(tokenizer, "tokenize") and hasattr(tokenizer, "id_to_token")):
        raise ModelError(f"{key}: needs a tokenizer that splits text into vocabulary tokens (word, char); "
                         f"got {type(tokenizer).__name__}")


def enabled(model_cfg: Any) -> bool:
    """Whether the recipe's ``model:`` section (:class:`seqkit.model_config.ModelConfig`) asks for it."""
    return model_cfg.decoder.get("copy_oov") is True


def extend_source(tokenizer: Any, text: str, ids: Sequence[int]) -> Extended:
    """``ids`` (:func:`seqkit.batching.encode_source` of ``text``: eos last) with every unk that
    stands for a real word replaced by that sentence's extended id ``V + k``."""
    words = tokenizer.tokenize(text)[: max(len(ids) - 1, 0)]
    unk, size = tokenizer.unk_id, tokenizer.vocab_size
    unk_token = tokenizer.id_to_token(unk)
    out, oov, index = list(ids), [], {}
    for j, (i, word) in enumerate(zip(ids, words)):
        if i == unk and word != unk_token:
            if word not in index:
                index[word] = len(oov)
                oov.append(word)
            out[j] = size + index[word]
    return Extended(out, oov)


def extend_target(tokenizer: Any, text: str, ids: Sequence[int], source: Extended) -> list[int]:
    """Target ``ids`` of ``text`` (``tokenizer.encode``, possibly cut) with each unk whose word is
    one of ``source.words`` replaced by its extended id; other unks stay unk."""
    index = {w: k for k, w in enumerate(source.words)}
    words = tokenizer.tokenize(text)
    unk, size = tokenizer.unk_id, tokenizer.vocab_size
    return [size + index[w] if i == unk and w in index else int(i) for i, w in zip(ids, words)]


def hide_words(src: Sequence[int], tgt: Sequence[int], vocab_size: int, draws: Sequence[float], rate: float,
               specials: Sequence[int]) -> tuple[list[int], list[int]]:
    """``train.oov_dropout``: a training pair with some of its known source words made unknown.

    Each distinct source id below ``vocab_size`` (not one of ``specials``) whose first position's
    draw is below ``rate`` becomes the sentence's next extended id (after the ids ``src`` already
    holds), in the source and wherever the target has it: the model reads the word as unk and can
    only emit it by copying, as it must a word of a topic the training data never had."""
    hidden = {int(i) - vocab_size for i in src if i >= vocab_size}
    mapping: dict[int, int] = {}
    skip = set(specials)
    for i, draw in zip(src, draws):
        if i < vocab_size and i not in skip and i not in mapping and draw < rate:
            mapping[int(i)] = vocab_size + len(hidden) + len(mapping)
    if not mapping:
        return list(src), list(tgt)
    return [mapping.get(i, i) for i in src], [mapping.get(i, i) for i in tgt]


def decode_tokens(tokens: Sequence[int], tokenizer: Any, *, oov_words: Sequence[str] = (),
                  attention: Any = None, src_words: Sequence[str] | None = None) -> str:
    """Output ids as text: an extended id ``V + k`` is ``oov_words[k]`` (an id past them, which
    only an almost-zero column can give, prints as the unknown mark); with ``src_words`` and
    ``attention`` ((len(tokens) + 1, S) as search records it: ``search.replace_unk``) an unk is
    the source word its step attended to most (it stays unk where that is the source eos).
    pad/bos/eos are skipped, as ``decode`` does."""
    skip = (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id)
    size, unk_text = tokenizer.vocab_size, tokenizer.decode([tokenizer.unk_id])
    words = []
    for t, token in enumerate(int(i) for i in tokens):
        if token in skip:
            continue
        if token >= size:
            k = token - size
            words.append(oov_words[k] if k < len(oov_words) else unk_text)
        elif token == tokenizer.unk_id and src_words is not None:
            j = int(attention[t].argmax())
            words.append(src_words[j] if j < len(src_words) else unk_text)
        else:
            words.append(tokenizer.decode([token]))
    return tokenizer.detokenize(words)
