"""Neural building blocks, each a plugin: encoders, decoders and attention.

The classes are registered through entry points in pyproject.toml (``seqkit.encoders``,
``seqkit.decoders``, ``seqkit.attention``); import them from their modules, e.g.
``seqkit.nn.encoders.LSTMEncoder``. This package imports nothing itself, so resolving one
plugin by name imports only its module.
"""
