"""A real router for the fuzzer: the grpc.aio server on its own event loop in a thread (so
hypothesis drives it from plain synchronous tests), every log record it writes captured."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from provider_router.app import App, create_app
from provider_router.config import load_config
from provider_router.tenants import hash_key

ADMIN_KEY = "fuzz-admin-key-0123456789"
TENANT_KEY = "fuzz-tenant-key-0123456789"
CLIENT_KEY = "fuzz-client-key-0123456789"
CONFIG = f"""
[routing]
default_provider = "mock"
default_model = "mock-1"

[[providers]]
name = "mock"
kind = "mock"
models = [{{ name = "mock-1", input_per_mtok = 1.0, output_per_mtok = 2.0 }}]

[[tenants]]
name = "acme"
key_sha256 = ["{hash_key(TENANT_KEY)}"]
models = ["mock*", "fuzz*", "*"]
rpm = 1000000
budget_usd_day = 1000000.0
"""


def examples(default: int) -> int:
    """Examples per property: PROVIDER_ROUTER_FUZZ_EXAMPLES for a long run, else `default`."""
    value = os.environ.get("PROVIDER_ROUTER_FUZZ_EXAMPLES", "")
    return int(value) if value.isdigit() else default


class ProblemLog(logging.Handler):
    """Keeps every ERROR record and every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record if it is a problem."""
        if record.levelno >= logging.ERROR or record.exc_info or record.stack_info:
            with self._lock_records:
                self.records.append(record)

    def take(self) -> list[str]:
        """The problems since the last take, formatted with their tracebacks."""
        with self._lock_records:
            records, self.records = self.records, []
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        return [formatter.format(r) for r in records]


class ThreadedRouter:
    """The real server on an event loop of its own thread."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="router",
                                       daemon=True)
        self.thread.start()
        config_path = tmp / "fuzz.toml"
        config_path.write_text(CONFIG)
        env = {"PROVIDER_ROUTER_STATE_REGISTRY_FILE": str(tmp / "registry.json"),
               "PROVIDER_ROUTER_ADMIN_KEYS": ADMIN_KEY,
               "PROVIDER_ROUTER_CLIENT_KEYS": CLIENT_KEY}
        self.app: App = self._run(self._start(load_config(config_path, env), env))

    def _run(self, coro: object) -> App:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)  # type: ignore[arg-type]

    async def _start(self, config: object, env: dict[str, str]) -> App:
        app = await create_app(config, env, listen="127.0.0.1:0")  # type: ignore[arg-type]
        await app.start()
        return app

    @property
    def target(self) -> str:
        """host:port."""
        return f"127.0.0.1:{self.app.port}"

    def stop(self) -> None:
        """Shut the server down and end the thread."""
        asyncio.run_coroutine_threadsafe(self.app.shutdown(0, 0), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def problem_log() -> Iterator[ProblemLog]:
    """Every problem record any logger writes while the module runs."""
    handler = ProblemLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


@pytest.fixture(scope="module")
def fuzz_router(tmp_path_factory: pytest.TempPathFactory, problem_log: ProblemLog
                ) -> Iterator[ThreadedRouter]:
    """One router for the whole module (hypothesis runs many examples against it)."""
    router = ThreadedRouter(tmp_path_factory.mktemp("fuzz"))
    problem_log.take()
    yield router
    router.stop()


@pytest.fixture(scope="module")
def channel(fuzz_router: ThreadedRouter) -> Iterator[grpc.Channel]:
    """A blocking channel that may send messages up to 64 MiB."""
    with grpc.insecure_channel(fuzz_router.target, options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as opened:
        yield opened
