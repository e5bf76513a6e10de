"""What every check shares: building a plugin's config, failing with a labelled message.

Imports no torch (the tokenizer check runs without it).
"""

from __future__ import annotations

from typing import Any, NoReturn

from pydantic import BaseModel


def label_of(kind: str, cls: type) -> str:
    """``encoder my_plugin.enc.MyEncoder``: how failures name the plugin."""
    return f"{kind} {cls.__module__}.{cls.__qualname__}"


def build_config(cls: type, config: BaseModel | dict[str, Any] | None) -> BaseModel:
    """None -> the plugin's defaults; a dict -> validated by ``cls.Config``; a Config -> itself."""
    if config is None:
        return cls.Config()
    if isinstance(config, dict):
        return cls.Config.model_validate(config)
    if not isinstance(config, cls.Config):
        raise TypeError(f"config for {cls.__qualname__} must be a dict or a {cls.Config.__name__}, got {type(config).__name__}")
    return config


def fail(label: str, message: str) -> NoReturn:
    raise AssertionError(f"{label}: {message}")
