"""Runtime registrations may not point host secrets at arbitrary URLs."""

from __future__ import annotations

from provider_router.domain import ModelSpec, ProviderKind, ProviderSpec
from provider_router.routing.key_policy import KeyReferencePolicy

OPENAI = ProviderSpec(name="openai", kind=ProviderKind.OPENAI, api_key_env="OPENAI_API_KEY",
                      models=(ModelSpec("gpt-4o"),))


def _spec(env: str, base_url: str = "https://evil.example/v1",
          kind: ProviderKind = ProviderKind.OPENAI_COMPATIBLE) -> ProviderSpec:
    return ProviderSpec(name="x", kind=kind, base_url=base_url, api_key_env=env,
                        models=(ModelSpec("m"),))


def test_a_configured_providers_key_cannot_go_to_another_host() -> None:
    policy = KeyReferencePolicy(("*_API_KEY",), (OPENAI,))
    (violation,) = policy.violations(_spec("OPENAI_API_KEY"))
    assert violation.field == "provider.api_key_env"
    assert "another base URL" in violation.description


def test_the_same_host_may_reuse_it() -> None:
    policy = KeyReferencePolicy(("*_API_KEY",), (OPENAI,))
    assert policy.violations(_spec("OPENAI_API_KEY", "https://api.openai.com/v1")) == ()
    assert policy.violations(_spec("OPENAI_API_KEY", "", ProviderKind.OPENAI)) == ()


def test_names_outside_the_allowlist_are_refused() -> None:
    policy = KeyReferencePolicy(("*_API_KEY",), ())
    (violation,) = policy.violations(_spec("AWS_SECRET_ACCESS_KEY"))
    assert "register_key_envs" in violation.description
    assert policy.violations(_spec("GROQ_API_KEY")) == ()


def test_an_empty_allowlist_refuses_every_reference_but_not_inline_keys() -> None:
    policy = KeyReferencePolicy((), ())
    assert policy.violations(_spec("GROQ_API_KEY"))
    assert policy.violations(_spec("")) == ()
