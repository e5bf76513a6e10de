"""seqkit.cpu_memory: bounded oneDNN/ideep primitive caches and heap trimming."""

import os
import subprocess
import sys

from seqkit import cpu_memory

_PRINT = "import os, seqkit; print(os.environ['ONEDNN_PRIMITIVE_CACHE_CAPACITY'], os.environ['LRU_CACHE_CAPACITY'])"


def _import_seqkit(env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "-c", _PRINT], env=env, capture_output=True, text=True, check=True).stdout


def test_importing_seqkit_caps_both_caches():
    cap = str(cpu_memory.ONEDNN_CACHE_CAPACITY)
    assert _import_seqkit({}).split() == [cap, cap]


def test_an_explicit_environment_setting_wins():
    assert _import_seqkit({"LRU_CACHE_CAPACITY": "7"}).split() == [str(cpu_memory.ONEDNN_CACHE_CAPACITY), "7"]
