"""Start `churn serve` as a real subprocess, wait until it is ready, and stop every process it
started. Used by the soak benchmark and the HTTP integration tests (benchmarks never import
tests)."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port nobody listens on right now, chosen below the kernel's ephemeral range.

    A port the kernel picks for port 0 is an ephemeral one: between this check and the
    server's bind, any outgoing connection of any process (another test worker's HTTP client,
    a server's own sockets) may take it, and the server then fails with "Could not bind".
    Ports below the range are only ever taken by an explicit bind."""
    low, _ = _ephemeral_range()
    lowest = min(20_000, max(1024, low - 8_000))
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(lowest, max(lowest + 1, low))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the kernel's choice
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state, start time) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = raw[raw.rindex(")") + 2:].split()  # the command name may contain spaces
    return int(rest[1]), rest[0], int(rest[19])


def descendants(root: int) -> dict[int, int]:
    """Every living descendant of `root` as {pid: start time}. BentoML's workers run in their
    own sessions, so a process group does not reach them; the parent chain does."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        info = _stat(int(entry))
        if info is None or info[1] == "Z":
            continue
        children.setdefault(info[0], []).append(int(entry))
        starts[int(entry)] = info[2]
    out, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = starts[child]
            todo.append(child)
    return out


def alive(processes: dict[int, int]) -> list[int]:
    """Those of {pid: start time} that still run (a zombie or a reused pid does not count)."""
    left = []
    for pid, start in processes.items():
        info = _stat(pid)
        if info is not None and info[1] != "Z" and info[2] == start:
            left.append(pid)
    return left


@dataclass
class Server:
    """A running `churn serve`."""

    proc: subprocess.Popen
    url: str
    log: Path
    tracked: dict[int, int] = field(default_factory=dict)

    @classmethod
    def start(cls, args: list[str], cwd: Path, env: dict[str, str], log: Path, port: int) -> Server:
        with open(log, "wb") as fh:
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return cls(proc, f"http://127.0.0.1:{port}", log)

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"churn serve exited with {self.proc.returncode} before "
                                     f"it was ready; log:\n{tail(self.log)}")
            try:
                resp = httpx.get(f"{self.url}/readyz", timeout=5)
                if resp.status_code == 200:
                    self.track()
                    return
                last = f"HTTP {resp.status_code}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise AssertionError(f"churn serve not ready after {timeout:.0f} s ({last}); "
                             f"log:\n{tail(self.log)}")

    def track(self) -> None:
        """Remember the processes of this server (the CLI, bentoml and its workers)."""
        self.tracked[self.proc.pid] = (_stat(self.proc.pid) or (0, "", 0))[2]
        self.tracked.update(descendants(self.proc.pid))

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, grace: float = 20.0) -> tuple[list[int], list[int]]:
        """SIGTERM the session, wait, then SIGKILL whatever is left. Returns the pids that
        outlived SIGTERM and those still running after SIGKILL (both should be empty)."""
        if self.running():
            self.track()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.proc.poll()
            if not alive(self.tracked):
                break
            time.sleep(0.2)
        left = alive(self.tracked)
        if left:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            for pid in left:  # workers live in their own sessions
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.2)
        return left, alive(self.tracked)


@contextmanager
def churn_serve(churn: str, cwd: Path, env: dict[str, str], log: Path,
                ready_s: float = 120.0) -> Iterator[Server]:
    """`churn serve` on a free loopback port, ready; on exit stopped with every process it
    started (asserted: none may survive SIGTERM and SIGKILL)."""
    port = free_port()
    server = Server.start([churn, "serve", "--host", "127.0.0.1", "--port", str(port)],
                          cwd=cwd, env=env, log=log, port=port)
    try:
        server.wait_ready(ready_s)
        yield server
    finally:
        _, left = server.stop(20)
        assert not left, f"processes left after SIGTERM and SIGKILL: {left}"
