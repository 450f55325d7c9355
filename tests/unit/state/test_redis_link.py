"""RedisLink against a real redis-server this test kills and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from provider_router.errors import ConfigError
from provider_router.state.redis_link import RedisLink
from provider_router.state.urls import check_redis_url, redacted
from provider_router.telemetry.metrics import Metrics
from tests.redis.server import RedisServer, free_port, redis_binary


def gauge_value(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("provider_router_state_backend_up")


async def until(condition: object, seconds: float = 10.0) -> bool:
    """Whether `condition()` became true within `seconds` (generous: the CI box is loaded)."""
    assert callable(condition)
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


async def test_down_once_then_up_again_with_gauge_log_and_resync(
        own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    link = RedisLink.from_url(own_redis_server.url, None, metrics.state_backend_up,
                              watch_interval_s=0.05)
    resyncs: list[bool] = []

    async def resync() -> None:
        resyncs.append(link.up)  # runs once the link is up again

    link.add_reconnect_listener(resync)
    assert await link.check() and link.up and gauge_value(metrics) == 1.0

    own_redis_server.kill()
    caplog.set_level(logging.WARNING, "provider_router.state.redis_link")
    for _ in range(5):  # every caller of a down link reports its failure
        with pytest.raises(Exception) as caught:
            await link.client.ping()
        link.failed(caught.value)
    assert not link.up and gauge_value(metrics) == 0.0
    assert "ConnectionError" in link.last_error
    unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable) == 1  # once per outage, not once per failure
    assert own_redis_server.url.removeprefix("redis://") in unreachable[0].getMessage()
    assert resyncs == []

    own_redis_server.restart()  # the watcher pings and flips the link back up by itself
    assert await until(lambda: link.up and resyncs)
    assert resyncs == [True] and gauge_value(metrics) == 1.0 and link.last_error == ""
    assert await link.client.ping()
    assert any("reachable again" in r.getMessage() for r in caplog.records)

    # A second outage is a new outage: logged again, listeners run again.
    own_redis_server.kill()
    assert not await link.check()
    own_redis_server.restart()
    assert await until(lambda: len(resyncs) == 2)
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 2
    await link.aclose()


async def test_succeeded_flips_up_without_waiting_for_the_watcher(
        own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=60)
    came_back = asyncio.Event()

    async def resync() -> None:
        came_back.set()

    link.add_reconnect_listener(resync)
    link.failed(ConnectionError("simulated by the test"))
    assert not link.up
    waiter = asyncio.create_task(link.wait_up())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    link.succeeded()  # a caller's command worked: no need to wait a minute for a ping
    await asyncio.wait_for(waiter, 10)
    await asyncio.wait_for(came_back.wait(), 10)
    await link.aclose()


async def test_a_failing_listener_is_logged_and_the_others_still_run(
        own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("listener bug")

    async def fine() -> None:
        ran.append("fine")

    link.add_reconnect_listener(broken)
    link.add_reconnect_listener(fine)
    link.failed(ConnectionError("simulated"))
    assert await until(lambda: ran == ["fine"])
    assert any("listener bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert link.up
    await link.aclose()


async def test_password_reaches_redis_and_never_the_log(
        own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cret-pa55word"
    admin = RedisLink.from_url(own_redis_server.url, None)
    await admin.client.config_set("requirepass", secret)
    await admin.aclose()

    wrong = RedisLink.from_url(own_redis_server.url, "not-it")
    assert not await wrong.check()
    assert secret not in wrong.last_error and "not-it" not in caplog.text
    await wrong.aclose()

    right = RedisLink.from_url(own_redis_server.url, secret)
    assert await right.check()
    await right.client.set("k", "v")
    assert await right.client.get("k") == b"v"
    # An ACL user: the name in the URL, the password from the variable.
    await right.client.acl_setuser("router", enabled=True, passwords=["+user-pa55"],
                                   keys=["*"], channels=["*"], commands=["+@all"])
    await right.aclose()
    user_url = own_redis_server.url.replace("redis://", "redis://router@")
    as_user = RedisLink.from_url(user_url, "user-pa55")
    assert await as_user.check()
    assert await as_user.client.acl_whoami() == "router"
    await as_user.aclose()
    assert secret not in caplog.text and "user-pa55" not in caplog.text


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A redis-server speaking only TLS, its certificate from a throwaway CA: (url, CA file)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    port = free_port()
    process = subprocess.Popen(
        [redis_binary(), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(tmp_path / "cert.pem"), "--tls-key-file", str(tmp_path / "key.pem"),
         "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.02)
        yield f"rediss://127.0.0.1:{port}/0", tmp_path / "ca.pem"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


async def test_tls_verifies_the_server_against_the_standard_trust_store(
        tls_redis: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    url, ca_file = tls_redis
    untrusted = RedisLink.from_url(url, None)
    assert not await untrusted.check()  # the system trust store does not know the test CA
    assert "certificate verify failed" in untrusted.last_error.lower()
    await untrusted.aclose()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # how an operator adds a private CA
    trusted = RedisLink.from_url(url, None)
    assert await trusted.check()
    await trusted.client.set("over-tls", "yes")
    assert await trusted.client.get("over-tls") == b"yes"
    await trusted.aclose()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://x:6379/0", "a redis:// or rediss:// URI"),
    ("redis://:hunter2@x:6379/0", "without a password"),
    ("redis://user:hunter2@x:6379/0", "without a password"),
    ("redis://x:99999/0", "port from 1 to 65535"),
    ("redis://x:6379/zero", "DB a number"),
    ("redis:///0", "DB a number"),
])
def test_bad_urls_name_the_key_and_never_echo_a_password(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_redis_url(url)
    assert caught.value.key == "state.url"
    assert expected in caught.value.message
    assert "hunter2" not in str(caught.value)


def test_redacted_drops_credentials_only() -> None:
    assert redacted("redis://u:p@h:1/0") == "redis://h:1/0"
    assert redacted("rediss://h:6380/1") == "rediss://h:6380/1"
    assert redacted("memory://") == "memory://"


async def test_every_runs_its_job_while_up_and_skips_turns_while_down(
        own_redis_server: RedisServer) -> None:
    link = RedisLink.from_url(own_redis_server.url, None, watch_interval_s=0.05)
    runs: list[bool] = []
    enough = asyncio.Event()
    wanted = 3

    async def job() -> None:
        runs.append(link.up)
        if len(runs) >= wanted:
            enough.set()

    task = asyncio.get_running_loop().create_task(link.every(0.02, job))
    try:
        await asyncio.wait_for(enough.wait(), 10)
        own_redis_server.kill()
        link.failed(ConnectionError("gone"))
        skipped_from = len(runs)
        await asyncio.sleep(0.2)
        assert len(runs) == skipped_from  # no turn while the link is down
        own_redis_server.restart()
        await asyncio.wait_for(link.wait_up(), 10)
        wanted = skipped_from + 2
        enough.clear()
        await asyncio.wait_for(enough.wait(), 10)
        assert all(runs)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await link.aclose()
