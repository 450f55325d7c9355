"""open_state_store chooses the backend by URI scheme."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider_router.errors import ConfigError
from provider_router.state.factory import open_state_store
from provider_router.state.memory import MemoryStateStore
from provider_router.state.redis import RedisStateStore
from provider_router.state.redis_link import RedisLink


async def test_the_factory_chooses_by_scheme(tmp_path: Path) -> None:
    assert isinstance(open_state_store("memory://", tmp_path / "r.json"), MemoryStateStore)
    # Building a link opens no connection: nothing listens on the port, nothing fails yet.
    link = RedisLink.from_url("redis://127.0.0.1:1/0", None)
    store = open_state_store("redis://127.0.0.1:1/0", None, link)
    assert isinstance(store, RedisStateStore)
    assert store.shared and not MemoryStateStore(None).shared
    with pytest.raises(ValueError, match="RedisLink"):
        open_state_store("rediss://127.0.0.1:1/0", None)
    with pytest.raises(ConfigError) as caught:
        open_state_store("etcd://x", None)
    assert caught.value.key == "state.url"
    await store.aclose()
    await link.aclose()
