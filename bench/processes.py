"""The processes of a benchmark run: the mock upstream, the server, the load generator.

The server runs as a real subprocess (`provider-router serve --config <generated toml>`),
pinned with taskset to its own core where the machine has two; the mock and the generator
share the other. `--pythonpath` runs the server from another checkout (before/after runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.procstat import pin_prefix

PYTHON = sys.executable
SERVE = str(Path(PYTHON).with_name("provider-router"))


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Cores:
    """Which cores each process is pinned to ("" = not pinned)."""

    server: str
    load: str

    @classmethod
    def detect(cls, pin: bool) -> Cores:
        """Server on core 0, mock and generator on core 1, when there are two cores."""
        if not pin or (os.cpu_count() or 1) < 2:
            return cls("", "")
        return cls("0", "1")


class Process:
    """A child process stopped with SIGTERM (then SIGKILL) when done."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._handle = log.open("wb")
        self.popen = subprocess.Popen(argv, stdout=self._handle, stderr=subprocess.STDOUT,
                                      env=env)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.popen.pid

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._handle.close()
        return self.popen.returncode


def start_mock(cores: Cores, logs: Path) -> tuple[Process, int]:
    """The mock upstream on a free port; returns it and its port."""
    ready = Path(tempfile.mkstemp(prefix="bench-mock-", suffix=".port")[1])
    ready.unlink()
    argv = [*pin_prefix(cores.load), PYTHON, "-m", "bench.mock_upstream",
            "--port", "0", "--ready-file", str(ready)]
    process = Process(argv, logs / "mock.log")
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text().strip():
        if process.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the mock upstream did not start (see {process.log})")
        time.sleep(0.05)
    port = int(ready.read_text())
    ready.unlink()
    return process, port


def server_env(pythonpath: str) -> dict[str, str]:
    """This environment without anything that would register providers or change the
    server's config, with `pythonpath` (another checkout) first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                "OPENROUTER_API_KEY", "OLLAMA_HOST"):
        env.pop(key, None)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH"))
                                            if p)
    return env


def router_argv(config: Path, workers: int = 1) -> list[str]:
    """`provider-router serve --config <config>` (with `--workers` past one)."""
    argv = [SERVE, "serve", "--config", str(config)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return argv


def floor_argv(target: str, mock_port: int) -> list[str]:
    """The floor server (bench/floor_server.py) on `target`, forwarding to the mock."""
    return [PYTHON, "-m", "bench.floor_server", "--listen", target,
            "--upstream", f"http://127.0.0.1:{mock_port}"]


@contextlib.contextmanager
def serving(argv: list[str], target: str, log: Path, pythonpath: str = "",
            timeout: float = 60.0, stop_timeout: float = 15.0) -> Iterator[Process]:
    """Run the server `argv` (in `server_env`) for the block, once `target` is SERVING."""
    process = Process(argv, log, env=server_env(pythonpath))
    try:
        wait_serving(target, process, timeout)
        yield process
    finally:
        process.stop(stop_timeout)


def wait_serving(target: str, process: Process, timeout: float) -> None:
    """Poll the gRPC health service until it says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.popen.poll() is not None:
                raise RuntimeError(f"the server exited early (see {process.log})")
            with contextlib.suppress(grpc.RpcError):
                answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            time.sleep(0.1)
    raise RuntimeError(f"the server did not become SERVING in {timeout:.0f}s "
                       f"(see {process.log})")


def run_loadgen(args: list[str], cores: str, timeout: float) -> dict[str, object]:
    """Run `python -m bench.loadgen <args>` pinned to `cores`; its JSON result."""
    argv = [*pin_prefix(cores), PYTHON, "-m", "bench.loadgen", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"loadgen {' '.join(args)} failed ({done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1])
    return result
