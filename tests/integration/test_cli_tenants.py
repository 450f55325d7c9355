"""The tenant CLI commands as real subprocesses: hash-key, usage, tenants."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from provider_router.tenants import hash_key
from provider_router.v1 import router_pb2 as pb
from tests.integration.conftest import StartRouter
from tests.integration.test_tenants import ADMIN_KEY, BETA_KEY, CONFIG, ENV


async def _cli(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVIDER_ROUTER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provider_router", *args, env=env,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_hash_key_reads_stdin_and_refuses_short_keys() -> None:
    key = "a-long-random-api-key-0123456789"
    code, out, _ = await _cli("hash-key", stdin=key.encode() + b"\n")
    assert (code, out.strip()) == (0, hash_key(key))
    code, out, err = await _cli("hash-key", stdin=b"short\n")
    assert code == 2 and out == ""
    assert "at least 20" in err and "short" not in err.replace("shorter", "")
    assert "Traceback" not in err


async def test_hash_key_generate_prints_a_key_and_its_hash() -> None:
    code, out, _ = await _cli("hash-key", "--generate")
    lines = dict(line.split(":", 1) for line in out.strip().splitlines())
    assert code == 0 and hash_key(lines["key"].strip()) == lines["key_sha256"].strip()


async def test_usage_and_tenants_tables_and_json(start_router: StartRouter) -> None:
    router = await start_router(CONFIG, ENV)
    await router.stub.Chat(pb.ChatRequest(messages=[pb.ChatMessage(role=pb.ROLE_USER,
                                                                   content="hi")]),
                           timeout=10, metadata=(("x-api-key", BETA_KEY),))
    admin = ("--target", router.target, "--api-key", ADMIN_KEY)
    code, out, _ = await _cli("usage", *admin, "--lines")
    assert code == 0
    assert "TENANT" in out and "acme" in out and "$0.5000" in out  # acme's day budget
    assert "beta" in out and "mock" in out
    code, out, _ = await _cli("usage", *admin, "beta", "--json")
    [beta] = json.loads(out)["tenants"]
    assert beta["tenant"] == "beta" and beta["spent_day_usd"] > 0
    code, out, _ = await _cli("tenants", *admin, "--json")
    assert [t["name"] for t in json.loads(out)["tenants"]] == ["acme", "beta"]
    code, out, err = await _cli("usage", "--target", router.target, "--api-key", BETA_KEY)
    assert code == 1 and "PERMISSION_DENIED" in err
