"""Pid files for the background services `accessa infra up` starts (and only those)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: int | None, cmdline_marker: str) -> bool:
    """True if `pid` runs and its command line mentions `cmdline_marker` (pid reuse guard)."""
    if pid is None:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and any(
            cmdline_marker in part for part in proc.cmdline()
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def terminate(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL if it did not exit."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(10)
