"""[server] TLS, health port and message size keys: bad values name the key, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from provider_router.cli import main
from provider_router.config import DEFAULT_MAX_MESSAGE_BYTES, load_config
from provider_router.errors import ConfigError


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("router.example")
    paths = {"cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "ca": tmp_path / "ca.pem", "other_key": tmp_path / "other.key"}
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    ca.cert_pem.write_to_path(str(paths["ca"]))
    ca.issue_cert("else.example").private_key_pem.write_to_path(str(paths["other_key"]))
    return {name: str(path) for name, path in paths.items()}


def _server(**keys: object) -> dict[str, str]:
    return {f"PROVIDER_ROUTER_SERVER_{k.upper()}": f'"{v}"' if isinstance(v, str) else str(v)
            for k, v in keys.items()}


def test_defaults_are_plaintext_and_32_mib() -> None:
    server = load_config(None, {}).server
    assert server.tls is None and server.health_listen == ""
    assert server.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 32 * 1024 * 1024


def test_tls_and_mtls_files_load(files: dict[str, str]) -> None:
    server = load_config(None, _server(tls_cert_file=files["cert"], tls_key_file=files["key"],
                                       tls_client_ca_file=files["ca"])).server
    assert server.tls is not None and server.tls.mutual
    assert str(server.tls.key) == files["key"]


@pytest.mark.parametrize(("keys", "named", "says"), [
    ({"tls_key_file": "KEY"}, "server.tls_cert_file", "both or neither"),
    ({"tls_cert_file": "CERT"}, "server.tls_key_file", "both or neither"),
    ({"tls_client_ca_file": "CA"}, "server.tls_client_ca_file", "mTLS needs"),
    ({"tls_cert_file": "/nonexistent.pem", "tls_key_file": "KEY"}, "server.tls_cert_file",
     "no such file"),
    ({"tls_cert_file": "CERT", "tls_key_file": "OTHER_KEY"}, "server.tls_key_file",
     "private key of server.tls_cert_file"),
    ({"tls_cert_file": "KEY", "tls_key_file": "KEY"}, "server.tls_cert_file",
     "PEM certificate chain"),
    ({"tls_cert_file": "CERT", "tls_key_file": "KEY", "tls_client_ca_file": "KEY"},
     "server.tls_client_ca_file", "PEM CA certificates"),
    ({"health_listen": "nowhere"}, "server.health_listen", "HOST:PORT"),
    ({"max_message_bytes": 10}, "server.max_message_bytes", ">= 1024"),
])
def test_bad_tls_settings_name_the_key(files: dict[str, str], keys: dict[str, object],
                                       named: str, says: str) -> None:
    aliases = {"KEY": files["key"], "CERT": files["cert"], "CA": files["ca"],
               "OTHER_KEY": files["other_key"]}
    resolved = {k: aliases.get(v, v) if isinstance(v, str) else v for k, v in keys.items()}
    with pytest.raises(ConfigError) as info:
        load_config(None, _server(**resolved))
    assert info.value.key == named
    assert says in info.value.message


def test_serve_check_exits_2_naming_the_key(tmp_path: Path, files: dict[str, str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "router.toml"
    path.write_text(f'[server]\ntls_key_file = "{files["key"]}"\n')
    assert main(["serve", "--config", str(path), "--check"]) == 2
    assert "server.tls_cert_file" in capsys.readouterr().err


def test_an_encrypted_key_is_refused_not_prompted_for(files: dict[str, str],
                                                      tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(Path(files["key"]).read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    with pytest.raises(ConfigError) as info:
        load_config(None, _server(tls_cert_file=files["cert"], tls_key_file=str(encrypted)))
    assert info.value.key == "server.tls_key_file"
    assert "passphrase" in info.value.message
