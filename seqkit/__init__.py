"""seqkit: recurrent sequence-to-sequence models, from recipe to torch-free runtime.

Importing ``seqkit`` imports no torch; the training stack lives in modules that do.
"""

from seqkit.cpu_memory import bound_onednn_caches

# Before any torch op of any entry point (CLI, library, tools/): see seqkit/cpu_memory.py.
bound_onednn_caches()

__version__ = "0.1.0"
