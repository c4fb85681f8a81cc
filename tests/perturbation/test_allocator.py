"""Freed CPU memory kept for reuse: no page faults on the next pass."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from captum_polycam.perturbation import allocator, tune_cpu_allocator

# In a fresh process (the setting is process-wide): page faults of allocating, touching and
# freeing 64 MiB, the fourth time round (by then the heap has room for the block even if small
# allocations took part of a freed one), before and after tuning.
_FAULTS_OF_A_REUSED_BLOCK = """
import resource, sys, torch
from captum_polycam import tune_cpu_allocator

def faults_of_a_later_round():
    for round in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = torch.empty(16 * 2**20).fill_(1.0)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

default = faults_of_a_later_round()
print(tune_cpu_allocator(), default, faults_of_a_later_round())
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_a_freed_block_is_reused_without_page_faults() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _FAULTS_OF_A_REUSED_BLOCK],
        capture_output=True,
        text=True,
        check=True,
    )
    applied, default, tuned = result.stdout.split()
    assert applied == "True"
    # 64 MiB is 16,384 pages of 4 KiB: glibc unmaps the block and faults every page back in.
    assert int(default) > 10_000
    assert int(tuned) < 100


def test_other_c_libraries_are_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert tune_cpu_allocator.__wrapped__() is False
