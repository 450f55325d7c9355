"""Fixtures for connector tests: fake upstreams per protocol, connectors closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from provider_router.connectors.base import Connector
from provider_router.connectors.factory import ConnectorSettings, create_connector
from provider_router.domain import ProviderKind, ProviderSpec
from tests.fakes.base import FakeUpstream
from tests.fakes.harness import FAKES, KEY, settings

HTTP_KINDS = (ProviderKind.OPENAI, ProviderKind.ANTHROPIC, ProviderKind.GEMINI,
              ProviderKind.OLLAMA)

MakeConnector = Callable[..., Connector]


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
