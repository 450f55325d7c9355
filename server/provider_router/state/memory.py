"""The embedded `memory://` state store: one process, registrations persisted to a local file.

The file is JSON, replaced atomically (write a temporary file in the same directory, fsync,
rename over the old one, fsync the directory), so a crash leaves either the old or the new
registry, never half of one. It is created with mode 0600: it holds the API keys given to
Register, because a registration must survive a restart. File I/O runs in a worker thread so
it never blocks the event loop. Without a file the store keeps registrations in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

from provider_router.domain import ProviderSpec
from provider_router.errors import ConfigError
from provider_router.state.base import ChangeCallback, StoreHealth, Unsubscribe
from provider_router.state.codec import CodecError, decode_spec, encode_spec

FORMAT_VERSION = 1
"""The registry file's format version; a file of another version is refused, not guessed."""


class MemoryStateStore:
    """The StateStore of a single process, optionally persisted to `registry_file`."""

    shared = False
    """Only this process writes here."""

    def __init__(self, registry_file: Path | None = None) -> None:
        self._file = registry_file
        self._lock = threading.Lock()
        self._specs: dict[str, ProviderSpec] | None = None
        self._last_error = ""

    async def load_providers(self) -> tuple[ProviderSpec, ...]:
        """Every persisted registration, sorted by name (read from the file once)."""
        return await asyncio.to_thread(self._load)

    async def save_provider(self, spec: ProviderSpec) -> None:
        """Persist a registration, replacing any of the same name."""
        await asyncio.to_thread(self._change, spec.name, spec)

    async def delete_provider(self, name: str) -> bool:
        """Remove a registration; whether one existed."""
        return await asyncio.to_thread(self._change, name, None)

    def subscribe(self, callback: ChangeCallback) -> Unsubscribe:
        """No other handle can change a process-local store, so the callback is never called."""
        return _nothing

    async def listening(self) -> None:
        """The feed never fires, so it is as live as it will ever be."""

    async def health(self) -> StoreHealth:
        """Unhealthy when the last write failed or the file's directory is not writable."""
        if self._last_error:
            return StoreHealth(False, self._last_error)
        if self._file is None:
            return StoreHealth(True, "in memory only (no registry file)")
        writable = await asyncio.to_thread(_dir_writable, self._file.parent)
        if not writable:
            return StoreHealth(False, f"cannot write to {self._file.parent}")
        return StoreHealth(True, f"registry file {self._file}")

    async def aclose(self) -> None:
        """Nothing to release: every write is durable when it returns."""

    # --- worker-thread side -----------------------------------------------------------------

    def _loaded(self) -> dict[str, ProviderSpec]:
        # Called with the lock held; reads the file the first time only.
        if self._specs is None:
            self._specs = _read(self._file) if self._file is not None else {}
        return self._specs

    def _load(self) -> tuple[ProviderSpec, ...]:
        with self._lock:
            specs = self._loaded()
            return tuple(specs[name] for name in sorted(specs))

    def _change(self, name: str, spec: ProviderSpec | None) -> bool:
        with self._lock:
            specs = dict(self._loaded())
            existed = name in specs
            if spec is None:
                specs.pop(name, None)
            else:
                specs[name] = spec
            if self._file is not None:
                try:
                    _write(self._file, specs)
                except OSError as exc:
                    self._last_error = f"writing {self._file} failed: {exc.strerror or exc}"
                    raise
                self._last_error = ""
            # Only a durable change becomes the store's state.
            self._specs = specs
            return existed


def _nothing() -> None:
    """Unsubscribe from a feed that never fires."""


def _dir_writable(directory: Path) -> bool:
    if directory.exists():
        return os.access(directory, os.W_OK | os.X_OK)
    return _dir_writable(directory.parent) if directory.parent != directory else False


def _read(path: Path) -> dict[str, ProviderSpec]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    expected = f"a provider-router registry file (format version {FORMAT_VERSION})"
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise CodecError("unknown format or version")
        entries = doc.get("providers")
        if not isinstance(entries, list):
            raise CodecError("providers: expected a list")
        specs = [decode_spec(e, f"providers[{i}]") for i, e in enumerate(entries)]
    except (ValueError, CodecError) as exc:
        raise ConfigError("state.registry_file", str(path), f"{expected}: {exc}") from exc
    return {spec.name: spec for spec in specs}


def _write(path: Path, specs: dict[str, ProviderSpec]) -> None:
    doc = {"version": FORMAT_VERSION,
           "providers": [encode_spec(specs[n], include_secret=True) for n in sorted(specs)]}
    data = json.dumps(doc, indent=2, sort_keys=True).encode()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600, before any secret is written to it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is; not every OS can open a dir.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
