"""seqkit-convenc: a ConvS2S-style gated convolutional encoder for seqkit (entry point ``conv``).

The encoder lives in :mod:`seqkit_convenc.encoder`; this package imports nothing itself, so
listing plugins (``seqkit plugins``) stays cheap.
"""

__version__ = "0.1.0"
