"""Registry behaviour with fake entry points: lazy load, unknown names, broken and duplicate plugins."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest
from pydantic import BaseModel, ConfigDict

from seqkit.errors import PluginError
from seqkit.registry import Registry, validate_spec


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: int = 4


class GoodAttention:
    Config = _Cfg
    needs_previous_state = False

    def precompute(self, memory):
        return memory

    def forward(self, *args):
        return args


@dataclass
class FakeDist:
    name: str
    version: str = "1.0"

    @property
    def metadata(self):
        return {"Name": self.name}


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint; counts loads so laziness is observable."""

    def __init__(self, name, value, dist, target=None, error=None):
        self.name, self.value, self.dist = name, value, FakeDist(dist)
        self._target, self._error, self.loads = target, error, 0

    def load(self):
        self.loads += 1
        if self._error is not None:
            raise self._error
        return self._target


def make_registry(*eps, group="seqkit.attention"):
    return Registry(lambda g: [ep for ep in eps if g == group])


def test_discovery_imports_nothing_and_load_is_lazy():
    a = FakeEntryPoint("luong-dot", "pkg.attn:Dot", "seqkit", GoodAttention)
    b = FakeEntryPoint("bahdanau", "pkg.attn:Add", "seqkit", GoodAttention)
    reg = make_registry(a, b)
    assert set(reg.available("attention")) == {"luong-dot", "bahdanau"}
    assert a.loads == 0 and b.loads == 0
    assert reg.get("attention", "luong-dot") is GoodAttention
    assert (a.loads, b.loads) == (1, 0)
    reg.get("attention", "luong-dot")
    assert a.loads == 1  # cached


def test_unknown_name_lists_available_and_suggests():
    reg = make_registry(FakeEntryPoint("luong-general", "x:y", "seqkit", GoodAttention),
                        FakeEntryPoint("fancy", "x:z", "seqkit-fancy", GoodAttention))
    with pytest.raises(PluginError) as err:
        reg.get("attention", "luong-genral")
    msg = str(err.value)
    assert "did you mean 'luong-general'?" in msg
    assert "luong-general (seqkit)" in msg and "fancy (seqkit-fancy)" in msg


def test_import_failure_names_distribution_and_is_isolated():
    broken = FakeEntryPoint("broken", "bad.mod:X", "seqkit-broken", error=ImportError("No module named 'bad'"))
    good = FakeEntryPoint("luong-dot", "x:y", "seqkit", GoodAttention)
    reg = make_registry(broken, good)
    with pytest.raises(PluginError) as err:
        reg.get("attention", "broken")
    assert "seqkit-broken" in str(err.value) and "No module named 'bad'" in str(err.value)
    assert reg.get("attention", "luong-dot") is GoodAttention
    assert reg.check(reg.available("attention")["broken"]) is not None
    assert reg.check(reg.available("attention")["luong-dot"]) is None


def test_duplicate_names_from_two_distributions_name_both():
    reg = make_registry(FakeEntryPoint("dot", "a:X", "dist-a", GoodAttention),
                        FakeEntryPoint("dot", "b:X", "dist-b", GoodAttention))
    with pytest.raises(PluginError) as err:
        reg.get("attention", "dot")
    assert "dist-a" in str(err.value) and "dist-b" in str(err.value)


def test_contract_violation_is_reported():
    class NoForward:
        Config = _Cfg
        needs_previous_state = False

        def precompute(self, memory):
            return memory

    reg = make_registry(FakeEntryPoint("half", "x:y", "seqkit-half", NoForward))
    with pytest.raises(PluginError, match="missing forward"):
        reg.get("attention", "half")


def test_autoload_switch_keeps_only_builtins(monkeypatch):
    reg_eps = (FakeEntryPoint("dot", "a:X", "seqkit", GoodAttention),
               FakeEntryPoint("ext", "b:X", "third-party", GoodAttention))
    monkeypatch.setenv("SEQKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert list(make_registry(*reg_eps).available("attention")) == ["dot"]
    monkeypatch.delenv("SEQKIT_DISABLE_PLUGIN_AUTOLOAD")
    assert list(make_registry(*reg_eps).available("attention")) == ["dot", "ext"]


def test_validate_spec_checks_plugin_config_with_path():
    reg = make_registry(FakeEntryPoint("dot", "a:X", "seqkit", GoodAttention))
    cls, cfg = validate_spec("attention", {"type": "dot", "size": 8}, "model.decoder.attention", reg)
    assert cls is GoodAttention and cfg.size == 8
    with pytest.raises(PluginError) as err:
        validate_spec("attention", {"type": "dot", "sise": 8}, "model.decoder.attention", reg)
    assert "model.decoder.attention.sise: unknown key; did you mean 'size'?" in str(err.value)
    with pytest.raises(PluginError) as err:
        validate_spec("attention", {"type": "dot", "size": "big"}, "model.decoder.attention", reg)
    assert str(err.value).startswith("model.decoder.attention.size: ")


def test_real_entry_points_list_builtin_tokenizers():
    reg = Registry()
    toks = reg.available("tokenizer")
    for name in ("char", "word", "sentencepiece"):
        assert toks[name].distribution == "seqkit"
