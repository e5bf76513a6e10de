"""seqkit.cpu_memory: bounded oneDNN/ideep primitive caches, and malloc keeping freed blocks."""

import json
import os
import platform
import subprocess
import sys

import pytest

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


# In a child: mallopt is process-wide. Reports what keep_freed_memory said, then whether a fresh
# 64 MiB block came from the heap (glibc's mallinfo2: hblkhd = bytes in mmap'd blocks; the
# block's own share of it).
_MALLOC_CHILD = """
import ctypes, json, sys
from seqkit.cpu_memory import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = Info
said = keep_freed_memory() if sys.argv[1] == "keep" else "not called"
mapped_before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblkhd - mapped_before
libc.free(block)
print(json.dumps({"said": said, "mapped": mapped, "kept": libc.mallinfo2().fordblks}))
"""


def _malloc_child(mode, env_overrides=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")}
    env.update(env_overrides or {})
    out = subprocess.run([sys.executable, "-c", _MALLOC_CHILD, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_keep_freed_memory_serves_a_large_block_from_the_heap_and_keeps_it():
    before = _malloc_child("default")
    assert before["mapped"] >= 64 << 20  # glibc's default: a block this size is mmap'd, and unmapped on free
    after = _malloc_child("keep")
    assert after["said"] == "malloc keeps freed blocks"
    assert after["mapped"] == 0
    assert after["kept"] >= 64 << 20  # freed, still in the heap for the next step


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_MAX_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"},
                                 {"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"}])
def test_keep_freed_memory_leaves_a_tuned_or_replaced_malloc_alone(env):
    said = cpu_memory.keep_freed_memory(env)
    assert said in ("malloc as the environment tunes it", "malloc preloaded")
    if platform.libc_ver()[0] == "glibc" and "LD_PRELOAD" not in env:
        assert _malloc_child("keep", env)["mapped"] >= 64 << 20  # the environment's setting stands
