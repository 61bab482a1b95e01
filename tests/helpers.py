"""Helpers for the tests: running the real command line, finding the shared real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def run_cli(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run the real ``sparkvision`` command in a child process; returns its output and status."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "sparkvision", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)
