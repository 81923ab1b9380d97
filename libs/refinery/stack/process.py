"""Supervised child processes with their own log files and readiness checks."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


_PR_SET_PDEATHSIG = 1
# The kernel's parent-death signal follows the *thread* that forked the child, so every child
# is forked by this one long-lived thread: a child started from a short-lived thread (a test's
# chaos thread, say) would otherwise be killed the moment that thread ends.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refinery-spawner")


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM if the supervisor dies,
    so a killed `refinery run` or test session never leaves servers behind."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class ManagedProcess:
    """One child process. Its output goes to `<log_dir>/<name>.log`, never to our terminal."""

    def __init__(
        self, name: str, argv: list[str], log_dir: Path, env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = _SPAWNER.submit(
                subprocess.Popen, self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                preexec_fn=_die_with_parent,  # own session: Ctrl-C in the terminal reaches the supervisor only
            ).result()
        finally:
            log.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, check: Callable[[], bool], timeout_s: float,
                   why: Callable[[], str] | None = None) -> None:
        """Polls `check` until it holds; on timeout the error carries `why()` (what is not ready) and the log tail."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"{self.name} exited during start-up; see {self.log_path}:\n{self.tail()}")
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(0.05)
        detail = f"\n{why()}" if why is not None else ""
        raise TimeoutError(f"{self.name} not ready after {timeout_s}s{detail}; see {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def dump_stacks(self) -> None:
        """Ask a Python service to write every thread's stack to its log (SIGUSR1)."""
        if self.alive and "python" in Path(self.argv[0]).name:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGUSR1)

    def kill(self) -> None:
        """kill -9, as a crash would (tests of the no-loss contract use it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
