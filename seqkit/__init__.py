"""seqkit: recurrent sequence-to-sequence models, from recipe to torch-free runtime.

Importing ``seqkit`` imports no torch; the training stack lives in modules that do.
"""

__version__ = "0.1.0"
