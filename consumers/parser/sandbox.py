"""pdfium's work in a worker process with a hard memory limit (RLIMIT_AS).

The bomb guard knows the tricks we know; this bounds the ones we don't. The worker may grow
its address space by `memory_limit_mb` beyond what it had once pdfium was loaded; past that an
allocation fails, pdfium usually dies with it, and the document fails as `pdf_bomb` while the
consumer and its event loop carry on. A call given a `timeout_s` that runs past it has its
worker killed (`parse_timeout`). A dead worker is replaced on the next call.
"""

from __future__ import annotations

import asyncio
import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import resource
import signal
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from accessa.errors import PermanentError

DEFAULT_MEMORY_LIMIT_MB = 512
_PRELOAD = ["consumers.parser.local"]  # imported once in the fork server, not per worker
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _die_with_the_fork_server() -> None:
    """Let the fork server exit when the parser dies, and the worker with it, even on SIGKILL.

    The fork server exits on EOF of its "alive" pipe, but it hands the pipe's write end to
    every child it forks; this worker also holds the write end of its own call queue and of
    the resource tracker's pipe. So when the parser died without cleanup, the worker waited
    forever for a call, the fork server for EOF, and the tracker too: all three leaked.
    """
    if sys.platform == "linux":
        # Linux-only: SIGKILL this worker when its parent (the fork server's only thread) ends.
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # Closed only after the prctl: the fork server cannot see EOF, and exit, before it is set.
    server = multiprocessing.forkserver._forkserver  # no public handle (Python 3.11)
    alive_fd = server._forkserver_alive_fd  # type: ignore[attr-defined]
    if alive_fd is not None:
        os.close(alive_fd)
        server._forkserver_alive_fd = None  # type: ignore[attr-defined]


def _init_worker(extra_bytes: int) -> None:
    """Worker initializer."""
    _die_with_the_fork_server()
    _limit_address_space(extra_bytes)


def _limit_address_space(extra_bytes: int) -> None:
    """The worker's address space as it is now, plus `extra_bytes`, and no more."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    limit = pages * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _call(fn: Callable[..., Any], args: tuple, kwargs: dict) -> tuple[str, Any, str]:
    """Run `fn`; a PermanentError comes back as its code and message (its `code` does not
    survive pickling), running out of memory as `pdf_bomb`."""
    try:
        return "ok", fn(*args, **kwargs), ""
    except PermanentError as exc:
        return "error", exc.code, exc.message
    except MemoryError:
        return "error", "pdf_bomb", "the PDF needs more memory than the parser may use"


class MemoryCappedWorker:
    """One worker process at a time runs one call: when it dies, only that call is to blame."""

    def __init__(self, memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB) -> None:
        self.memory_limit_mb = memory_limit_mb
        self._executor: ProcessPoolExecutor | None = None
        self._turn = asyncio.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_init_worker,
                initargs=(self.memory_limit_mb * 1_048_576,),
            )
        return self._executor

    async def run(
        self, fn: Callable[..., Any], *args: Any, timeout_s: float | None = None, **kwargs: Any
    ) -> Any:
        """`fn(*args, **kwargs)` in the worker; PermanentError `pdf_bomb` if it runs out of
        memory or dies, `parse_timeout` (the worker killed) if it runs past `timeout_s`."""
        async with self._turn:
            pool = self._pool()
            try:
                status, value, message = await asyncio.wait_for(
                    asyncio.wrap_future(pool.submit(_call, fn, args, kwargs)), timeout_s
                )
            except TimeoutError as exc:
                self._kill()
                raise PermanentError(
                    f"parsing the PDF took longer than its {timeout_s:.1f}s budget",
                    code="parse_timeout",
                ) from exc
            except BrokenProcessPool as exc:
                self._executor = None
                pool.shutdown(wait=False, cancel_futures=True)
                raise PermanentError(
                    f"parsing the PDF needed more than {self.memory_limit_mb} MB of memory",
                    code="pdf_bomb",
                ) from exc
        if status == "error":
            raise PermanentError(message, code=value)
        return value

    @property
    def pids(self) -> list[int]:
        """The worker's process id (none before the first call or after a kill)."""
        return list(getattr(self._executor, "_processes", None) or ())

    def _kill(self) -> None:
        """SIGKILL the worker: pdfium and Tesseract cannot be interrupted from outside, and a
        thread left running would hold the pool's one slot. The next call starts a new one."""
        pool, self._executor = self._executor, None
        if pool is None:
            return
        # concurrent.futures has no public way to reach its processes (Python 3.11).
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
