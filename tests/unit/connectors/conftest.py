"""Fixtures for connector tests: fake upstreams per protocol, connectors closed at teardown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop

from provider_router.connectors.base import Connector
from provider_router.connectors.factory import ConnectorSettings, create_connector
from provider_router.connectors.remote import RequestBuilder
from provider_router.domain import ProviderKind, ProviderSpec
from tests.fakes.base import FakeUpstream
from tests.fakes.harness import FAKES, KEY, settings

HTTP_KINDS = (ProviderKind.OPENAI, ProviderKind.ANTHROPIC, ProviderKind.GEMINI,
              ProviderKind.OLLAMA)

MakeConnector = Callable[..., Connector]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item
                                  ) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The HTTP transport's tests run on both loops: the server runs on uvloop, whose
    transports are not asyncio's classes; the rest run on asyncio's."""
    if item.path.name == "test_http.py":
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop}


def body_builder(to_request: RequestBuilder, spec: ProviderSpec
                 ) -> Callable[..., dict[str, Any]]:
    """body_of(request, stream=False) → the JSON body a module's to_request builds for spec."""
    def body_of(req: Any, **kw: Any) -> dict[str, Any]:
        call = to_request(req, spec, settings(), **kw)
        assert call.body is not None
        return dict(call.body)

    return body_of


@pytest.fixture(params=HTTP_KINDS, ids=lambda k: k.value)
async def upstream(request: pytest.FixtureRequest) -> AsyncIterator[
        tuple[ProviderKind, FakeUpstream]]:
    """A started fake for each HTTP protocol, requiring the test key."""
    kind: ProviderKind = request.param
    fake = await FAKES[kind](required_key=KEY).start()
    yield kind, fake
    await fake.close()


@pytest.fixture
async def connect() -> AsyncIterator[MakeConnector]:
    """connect(spec, settings=None) → a connector, closed when the test ends."""
    made: list[Connector] = []

    def make(spec: ProviderSpec, connector_settings: ConnectorSettings | None = None
             ) -> Connector:
        connector = create_connector(spec, connector_settings or settings())
        made.append(connector)
        return connector

    yield make
    for connector in made:
        await connector.aclose()
