"""Contract checks for plugin authors: run one from your plugin's tests.

::

    from seqkit.testing import check_encoder, check_tokenizer

    def test_my_encoder_honours_the_contract():
        check_encoder(MyEncoder, {"hidden_size": 16, "num_layers": 2})

    def test_my_tokenizer_honours_the_contract():
        check_tokenizer(MyTokenizer, ["some training text", "more text"])

=====================  ===========================================================================
check                  what it runs
=====================  ===========================================================================
``check_tokenizer``    train, encode/decode, specials, save/load round trip, imports no torch
``check_encoder``      output shapes, mask, padding invariance, every built-in decoder on top of it,
                       ONNX encode/step parity
``check_decoder``      flat memory/state, ``forward`` == stepping ``step``, attention masking,
                       padding invariance, beam reordering, language-model mode, ONNX parity
``check_attention``    shapes, weights (sum 1, zero at padding), T steps at once == one at a time,
                       padding invariance, inside a built-in decoder, ONNX parity
=====================  ===========================================================================

Each check builds the plugin (``config``: None for its defaults, a dict validated by the plugin's
``Config``, or a ``Config`` instance), runs it in eval mode from a fixed seed on a small batch
with padding, and raises ``AssertionError`` naming the plugin, the check and the numbers at the
first violation of :mod:`seqkit.contracts`. Each returns the plugin instance it checked.

ONNX parity goes through ``seqkit export``'s own code (:mod:`seqkit.testing.onnx`): the encoder
and step graphs it writes (``torch.onnx.export(..., dynamo=False)``, flat ``memory_i``/``state_i``
tensors, batch and source length dynamic) run in the runtime's onnxruntime stepper at other batch
and source sizes than the trace, with beam-style row reordering, and must match torch.

Importing ``seqkit.testing`` imports no torch: ``check_tokenizer`` works in a torch-free
environment; the model checks (in :mod:`seqkit.testing.models`) import torch on first use.
"""

from __future__ import annotations

from typing import Any

from seqkit.testing.tokenizers import check_tokenizer

__all__ = ["check_attention", "check_decoder", "check_encoder", "check_tokenizer"]

_MODEL_CHECKS = ("check_attention", "check_decoder", "check_encoder")


def __getattr__(name: str) -> Any:
    if name in _MODEL_CHECKS:
        # The torch boundary: the model checks need torch, the tokenizer check does not (PEP 562).
        from seqkit.testing import models

        return getattr(models, name)
    raise AttributeError(f"module 'seqkit.testing' has no attribute {name!r}")
