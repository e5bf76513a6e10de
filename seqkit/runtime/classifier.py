"""classifier.onnx as a :data:`seqkit.inference.ProbsFunction`, in numpy. Imports no torch.

:class:`OrtClassifier` is to an exported classifier what
:func:`seqkit.export_classifier.torch_probs_fn` is to a torch one, so :class:`seqkit.inference.TextClassifier`
labels lines the same way on either backend.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from seqkit.runtime.format import PROBS, SRC, SRC_LENGTHS


class OrtClassifier:
    """(src (B, S) int64, lengths (B,) int64) -> probs (B, C) float32 over one session."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session

    def __call__(self, src: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        feeds = {SRC: np.ascontiguousarray(src, dtype=np.int64), SRC_LENGTHS: np.ascontiguousarray(lengths, dtype=np.int64)}
        return self.session.run([PROBS], feeds)[0]
