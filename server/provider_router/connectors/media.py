"""Image parts in the three shapes providers want: URL, data: URL, or base64 + media type."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from provider_router.domain import ImagePart

DEFAULT_IMAGE_TYPE = "image/png"
"""Media type assumed for inline bytes that came without one."""


@dataclass(frozen=True, slots=True)
class InlineImage:
    """An image as base64 text plus its media type."""

    mime_type: str
    base64_data: str


def inline(part: ImagePart) -> InlineImage | None:
    """The image as base64 if it is inline bytes or a base64 data: URL, else None."""
    if part.data:
        return _from_bytes(part)
    header, sep, payload = part.url.partition(",")
    if sep and header.startswith("data:") and header.endswith(";base64"):
        mime = header[len("data:"):-len(";base64")] or part.mime_type or DEFAULT_IMAGE_TYPE
        return InlineImage(mime, payload)
    return None


def as_url(part: ImagePart) -> str:
    """The image as a URL: its own, or a data: URL built from inline bytes."""
    if part.data:
        image = _from_bytes(part)
        return f"data:{image.mime_type};base64,{image.base64_data}"
    return part.url


def _from_bytes(part: ImagePart) -> InlineImage:
    mime = part.mime_type or DEFAULT_IMAGE_TYPE
    return InlineImage(mime, base64.b64encode(part.data).decode("ascii"))
