"""A run's peak memory is its own, not that of the process that started it (getrusage's ru_maxrss survives
fork and exec on Linux: a run started from a large test session reported the session's size)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_started_from_a_large_process_reports_its_own_peak():
    ballast = bytearray(300 * 2**20)
    ballast[:: 4096] = b"\1" * len(ballast[:: 4096])  # touch every page: resident, not just reserved
    code = "from ftx.figures import peak_memory, _rusage_peak_rss_mib; print(peak_memory('cpu')['peak_rss_mib'], _rusage_peak_rss_mib())"
    own, inherited = map(float, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                               check=True).stdout.split())
    assert inherited > 300  # the quirk: the parent's size
    assert own < 200, own  # the child's own (an interpreter with ftx.figures imported)
    del ballast
