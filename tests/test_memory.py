"""keep_freed_memory: freed tensors stay in the process, so reallocating them costs no page faults."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Runs a small convolutional network five times on a batch and prints the minor page faults it took
# (each run allocates and frees some 100 MB of activations, as inference does).
_PROBE = """
import resource
import torch
from dflab.runtime.memory import keep_freed_memory
applied = keep_freed_memory()
torch.set_num_threads(1)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
x = torch.rand(16, 3, 256, 256)
with torch.inference_mode():
    for _ in range(2):  # the heap grows to its peak
        net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        net(x)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(enabled: bool) -> tuple[str, int]:
    env = {"DFLAB_KEEP_FREED_MEMORY": "1" if enabled else "0", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, int(faults)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's allocator (Linux)")
def test_reallocating_freed_memory_no_longer_faults_it_back_in():
    applied, faults_kept = _probe(enabled=True)
    off, faults_returned = _probe(enabled=False)
    assert (applied, off) == ("True", "False")
    activation_pages = 16 * 8 * 256 * 256 * 4 // 4096  # one 32 MB activation
    assert faults_returned > 5 * activation_pages  # every run maps its activations afresh
    # The memory of the first runs is reused (the heap may still grow once: no more than that).
    assert faults_kept <= 2 * activation_pages and faults_kept < faults_returned / 10


# Fills the heap with 2 KB blocks, frees all but the last (which pins the heap's top, so glibc
# cannot give the hole back by itself), then hands the freed memory back.
_TRIM_PROBE = """
from dflab.runtime.memory import keep_freed_memory, release_freed_memory, resident_mb
keep_freed_memory()
blocks = [bytes(2048) for _ in range(200_000)]  # about 400 MB, from malloc (not Python's small-object pool)
last = blocks[-1]
del blocks[:-1]
before = resident_mb()
released = release_freed_memory()
print(released, round(before), round(resident_mb()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim (Linux)")
def test_release_freed_memory_gives_a_fragmented_heap_back():
    out = subprocess.run([sys.executable, "-c", _TRIM_PROBE], env={"PATH": ""}, capture_output=True, text=True,
                         check=True)
    released, before, after = out.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 300, out.stdout  # most of the 400 MB freed inside the heap went back
