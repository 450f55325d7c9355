"""The memory:// store: persistence across restarts, atomic writes, file mode, bad files."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from provider_router.domain import (
    Capability,
    CommandOptions,
    MockOptions,
    ModelSpec,
    ProviderKind,
    ProviderSpec,
    ProviderTimeouts,
    Secret,
)
from provider_router.errors import ConfigError
from provider_router.state.codec import CodecError, decode_spec, encode_spec
from provider_router.state.memory import MemoryStateStore

FULL = ProviderSpec(
    name="full", kind=ProviderKind.OPENAI_COMPATIBLE, base_url="https://llm.example/v1",
    api_key_env="LLM_KEY", api_key=Secret("sk-live-123"),
    models=(ModelSpec("a", 1.5, 6.0, 128_000, frozenset({Capability.VISION})), ModelSpec("b")),
    capabilities=frozenset({Capability.CHAT, Capability.TOOLS}), priority=-3, weight=0.0,
    max_concurrent=8, rate_limit_rpm=60, rate_limit_tpm=10_000,
    timeouts=ProviderTimeouts(connect=1.0, first_token=5.0, idle=2.5, total=60.0),
    labels=("eu", "cheap"), enabled=False, headers={"X-Team": "search"},
)
AGENT = ProviderSpec(name="agent", kind=ProviderKind.COMMAND, models=(ModelSpec("default"),),
                     command=CommandOptions(("claude", "-p", "{prompt_file}"), ("HOME",), True))
MOCK = ProviderSpec(name="mock", kind=ProviderKind.MOCK, models=(ModelSpec("m"),),
                    mock=MockOptions(latency=0.5, chunk_count=2, reply="hi", fail_status=503))


@pytest.mark.parametrize("spec", [FULL, AGENT, MOCK], ids=lambda s: s.name)
def test_the_codec_round_trips_every_field(spec: ProviderSpec) -> None:
    assert decode_spec(json.loads(json.dumps(encode_spec(spec, include_secret=True)))) == spec


def test_the_codec_leaves_the_secret_out_unless_asked() -> None:
    doc = encode_spec(FULL, include_secret=False)
    assert "api_key" not in doc and "sk-live-123" not in json.dumps(doc)
    assert decode_spec(doc).api_key is None


def test_absent_capabilities_keep_the_domain_default() -> None:
    spec = decode_spec({"name": "x", "kind": "mock", "models": [{"name": "m"}]})
    assert spec.capabilities == ProviderSpec("x", ProviderKind.MOCK).capabilities


@pytest.mark.parametrize(("doc", "where"), [
    ([], "provider: expected an object"),
    ({"name": "x", "kind": "telepathy"}, "provider.kind"),
    ({"name": 3, "kind": "mock"}, "provider.name: expected a string"),
    ({"name": "x", "kind": "mock", "models": [{"name": "m", "context_window": "big"}]},
     "provider.models[0].context_window: expected an integer"),
    ({"name": "x", "kind": "mock", "priority": True}, "provider.priority: expected an integer"),
    ({"name": "x", "kind": "mock", "capabilities": ["mind-reading"]}, "provider.capabilities"),
    ({"name": "x", "kind": "mock", "headers": {"A": 1}}, "provider.headers.A"),
    ({"name": "x", "kind": "mock", "timeouts": {"idle": "soon"}}, "provider.timeouts.idle"),
])
def test_a_malformed_document_names_the_path(doc: object, where: str) -> None:
    with pytest.raises(CodecError, match=where.replace("[", r"\[").replace("]", r"\]")):
        decode_spec(doc)


async def test_registrations_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "registry.json"
    store = MemoryStateStore(path)
    assert await store.load_providers() == ()
    await store.save_provider(FULL)
    await store.save_provider(AGENT)
    await store.save_provider(replace(MOCK, priority=2))
    assert await store.delete_provider("agent") is True
    assert await store.delete_provider("agent") is False
    restarted = MemoryStateStore(path)
    assert await restarted.load_providers() == (FULL, replace(MOCK, priority=2))


async def test_the_file_is_private_and_holds_the_key_only_there(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    await MemoryStateStore(path).save_provider(FULL)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "sk-live-123" in path.read_text()
    assert "sk-live-123" not in repr(FULL)


async def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "registry.json"
    store = MemoryStateStore(path)
    await store.save_provider(AGENT)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        await store.save_provider(MOCK)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["registry.json"]  # the temporary file is gone too
    health = await store.health()
    assert not health.ok and "No space left" in health.detail
    # The failed change did not become the store's state either.
    assert await store.load_providers() == (AGENT,)
    monkeypatch.undo()
    await store.save_provider(MOCK)
    assert (await store.health()).ok
    assert await MemoryStateStore(path).load_providers() == (AGENT, MOCK)


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 99, "providers": []}',
                                     b'{"version": 1, "providers": {}}',
                                     b'{"version": 1, "providers": [{"name": "x"}]}'])
async def test_a_corrupt_file_is_a_config_error_not_an_empty_registry(tmp_path: Path,
                                                                      content: bytes) -> None:
    path = tmp_path / "registry.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        await MemoryStateStore(path).load_providers()
    assert caught.value.key == "state.registry_file"


async def test_without_a_file_it_is_memory_only(tmp_path: Path) -> None:
    store = MemoryStateStore(None)
    await store.save_provider(MOCK)
    assert await store.load_providers() == (MOCK,)
    assert (await store.health()).ok
    assert os.listdir(tmp_path) == []


async def test_health_reports_an_unwritable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        health = await MemoryStateStore(locked / "registry.json").health()
        assert health.ok is (os.geteuid() == 0)  # root writes anywhere
    finally:
        locked.chmod(0o700)

