"""Plugin discovery through entry points: found without importing, loaded lazily by name.

Each kind (``tokenizer``, ``encoder``, ``decoder``, ``attention``) has an entry-point group
(see :mod:`seqkit.contracts`). seqkit's built-ins are declared in its own pyproject.toml
through the same groups. ``SEQKIT_DISABLE_PLUGIN_AUTOLOAD=1`` keeps discovery to the
``seqkit`` distribution alone (for tests and for debugging a broken environment).
"""

from __future__ import annotations

import difflib
import functools
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Iterable

from pydantic import BaseModel, ValidationError

from seqkit.contracts import KINDS, REQUIRED_ATTRIBUTES
from seqkit.errors import PluginError, shorten

BUILTIN_DISTRIBUTION = "seqkit"
AUTOLOAD_ENV = "SEQKIT_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin: what `seqkit plugins` lists. Nothing is imported to build it."""

    kind: str
    name: str
    value: str  # "module:attr"
    distribution: str
    version: str
    entry_point: Any  # importlib.metadata.EntryPoint (or a test double with .load())


def _dist_of(ep: Any) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown", "?"
    name = dist.metadata["Name"] if hasattr(dist, "metadata") else getattr(dist, "name", "unknown")
    return str(name), str(getattr(dist, "version", "?"))


class Registry:
    """Plugins of every kind, discovered from entry points given by ``entry_points_fn``.

    ``entry_points_fn(group)`` returns the entry points of one group; the default reads the
    installed distributions. Tests pass fake entry points.
    """

    def __init__(self, entry_points_fn: Callable[[str], Iterable[Any]] | None = None):
        self._entry_points_fn = entry_points_fn or (lambda group: metadata.entry_points(group=group))
        self._index: dict[str, dict[str, PluginInfo]] | None = None
        self._conflicts: dict[tuple[str, str], list[PluginInfo]] = {}
        self._loaded: dict[tuple[str, str], type] = {}

    # -- discovery -------------------------------------------------------------------------
    def _discover(self) -> dict[str, dict[str, PluginInfo]]:
        if self._index is not None:
            return self._index
        builtin_only = os.environ.get(AUTOLOAD_ENV, "").strip() not in ("", "0", "false")
        index: dict[str, dict[str, PluginInfo]] = {}
        for kind, group in KINDS.items():
            found: dict[str, PluginInfo] = {}
            for ep in self._entry_points_fn(group):
                dist, version = _dist_of(ep)
                if builtin_only and dist != BUILTIN_DISTRIBUTION:
                    continue
                info = PluginInfo(kind, ep.name, ep.value, dist, version, ep)
                previous = found.get(ep.name)
                if previous is not None and previous.distribution != dist:
                    self._conflicts.setdefault((kind, ep.name), [previous]).append(info)
                    continue
                found[ep.name] = info
            index[kind] = found
        self._index = index
        return index

    def available(self, kind: str) -> dict[str, PluginInfo]:
        """Name -> info for one kind, without importing anything."""
        _check_kind(kind)
        return dict(sorted(self._discover()[kind].items()))

    def all(self) -> list[PluginInfo]:
        index = self._discover()
        return [info for kind in KINDS for _, info in sorted(index[kind].items())]

    # -- loading ---------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> type:
        """Import and return the plugin class; only the named plugin is imported."""
        _check_kind(kind)
        key = (kind, name)
        if key in self._loaded:
            return self._loaded[key]
        plugins = self._discover()[kind]
        if key in self._conflicts:
            claimants = ", ".join(f"{p.distribution} ({p.value})" for p in self._conflicts[key])
            raise PluginError(
                f"{kind} plugin '{name}' is provided by more than one distribution: {claimants}; "
                "uninstall one of them"
            )
        info = plugins.get(name)
        if info is None:
            raise PluginError(unknown_name_message(kind, name, plugins))
        try:
            cls = info.entry_point.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
            raise PluginError(
                f"{kind} plugin '{name}' from distribution '{info.distribution}' "
                f"failed to import ({info.value}): {type(exc).__name__}: {exc}"
            ) from exc
        missing = [attr for attr in REQUIRED_ATTRIBUTES[kind] if not hasattr(cls, attr)]
        if missing:
            raise PluginError(
                f"{kind} plugin '{name}' from distribution '{info.distribution}' does not satisfy "
                f"the {kind} contract: missing {', '.join(missing)} (see seqkit.contracts)"
            )
        config_cls = getattr(cls, "Config")
        if not (isinstance(config_cls, type) and issubclass(config_cls, BaseModel)):
            raise PluginError(
                f"{kind} plugin '{name}' from distribution '{info.distribution}': Config must be "
                "a pydantic BaseModel subclass"
            )
        self._loaded[key] = cls
        return cls

    def check(self, info: PluginInfo) -> str | None:
        """Load one plugin; return None if it is healthy, else the error message."""
        try:
            self.get(info.kind, info.name)
        except PluginError as exc:
            return str(exc)
        return None


def unknown_name_message(kind: str, name: str, plugins: dict[str, PluginInfo], path: str | None = None) -> str:
    where = f"{path}: " if path else ""
    listing = ", ".join(f"{n} ({p.distribution})" for n, p in sorted(plugins.items())) or "none installed"
    guess = difflib.get_close_matches(name[:100], list(plugins), n=1, cutoff=0.6)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    return f"{where}unknown {kind} {shorten(name)}{hint} (available: {listing})"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise PluginError(f"unknown plugin kind '{kind}'; kinds: {', '.join(KINDS)}")


@functools.lru_cache(maxsize=1)
def default_registry() -> Registry:
    return Registry()


def get_plugin(kind: str, name: str) -> type:
    """The plugin class registered under ``name`` for ``kind`` (imported on first use)."""
    return default_registry().get(kind, name)


def validate_spec(kind: str, spec: dict[str, Any], path: str, registry: Registry | None = None) -> tuple[type, BaseModel]:
    """Resolve ``spec['type']`` and validate the other keys against the plugin's Config.

    ``path`` is the dotted recipe path of the spec (e.g. ``model.decoder.attention``); every
    error message starts with it.
    """
    registry = registry or default_registry()
    if not isinstance(spec, dict):
        raise PluginError(f"{path}: expected a mapping with a 'type' key, got {type(spec).__name__}")
    name = spec.get("type")
    if not isinstance(name, str):
        raise PluginError(f"{path}.type: required; one of: {', '.join(registry.available(kind))}")
    plugins = registry.available(kind)
    if name not in plugins:
        raise PluginError(unknown_name_message(kind, name, plugins, path=f"{path}.type"))
    try:
        cls = registry.get(kind, name)
    except PluginError as exc:
        raise PluginError(f"{path}.type: {exc}") from exc
    options = {k: v for k, v in spec.items() if k != "type"}
    try:
        config = cls.Config.model_validate(options)
    except ValidationError as exc:
        raise PluginError(format_validation_error(exc, path, cls.Config)) from exc
    return cls, config


def format_validation_error(exc: ValidationError, path: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem: ``dotted.path: message`` with "did you mean" for unknown keys."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p)[:60] for p in err["loc"])  # a hostile key can be megabytes long
        full = f"{path}.{loc}" if path and loc else (path or loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
            parent_fields = _fields_at(model, err["loc"][:-1]) if model else []
            guess = difflib.get_close_matches(str(err["loc"][-1]), parent_fields, n=1, cutoff=0.6)
            if guess:
                msg += f"; did you mean '{guess[0]}'?"
            elif parent_fields:
                msg += f"; valid keys: {', '.join(parent_fields)}"
        elif err["type"] == "literal_error":
            ctx = err.get("ctx", {}).get("expected", "")
            guess = difflib.get_close_matches(shorten(err.get("input")).strip("'"), [c.strip(" '") for c in ctx.replace(" or ", ",").split(",")], n=1)
            msg = f"unknown value {shorten(err.get('input'))}; expected {ctx}"
            if guess:
                msg += f"; did you mean '{guess[0]}'?"
        elif err["type"] == "value_error":  # the validator's own message names the value already
            msg = msg.removeprefix("Value error, ")
        else:
            msg = f"{msg} (got {shorten(err.get('input'))})" if "input" in err and not isinstance(err.get("input"), dict) else msg
        lines.append(f"{full}: {msg}")
    return "\n".join(lines)


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Field names of the (nested) pydantic model at ``loc``, for suggestions."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def build_plugin(kind: str, spec: dict[str, Any], path: str, *args: Any, **kwargs: Any) -> Any:
    """Validate ``spec`` and instantiate the plugin: ``cls(config, *args, **kwargs)``."""
    cls, config = validate_spec(kind, spec, path)
    return cls(config, *args, **kwargs)
