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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's allocator (Linux)")
def test_reallocating_freed_memory_no_longer_faults_it_back_in():
    applied, faults_kept = _probe(enabled=True)
    off, faults_returned = _probe(enabled=False)
    assert (applied, off) == ("True", "False")
    activation_pages = 16 * 8 * 256 * 256 * 4 // 4096  # one 32 MB activation
    assert faults_returned > 5 * activation_pages  # every run maps its activations afresh
    # The memory of the first runs is reused (the heap may still grow once: no more than that).
    assert faults_kept <= 2 * activation_pages and faults_kept < faults_returned / 10
