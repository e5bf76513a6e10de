"""seqkit-bytes: a byte-level tokenizer for seqkit with optional byte-pair merges (entry point ``bytes``).

The tokenizer lives in :mod:`seqkit_bytes.tokenizer`; like every seqkit tokenizer it imports
no torch, so the torch-free runtime can load it.
"""

__version__ = "0.1.0"
