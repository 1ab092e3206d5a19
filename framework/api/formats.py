"""The image formats the API takes (seed 000's list: jpeg/jpg, bmp, png, tiff/tif, gif), told by their bytes."""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from ..errors import ImageRefused

# format -> (the extension its stored key gets, content types that announce it)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jpeg": ("jpg", ("image/jpeg", "image/jpg", "image/pjpeg")),
    "png": ("png", ("image/png",)),
    "bmp": ("bmp", ("image/bmp", "image/x-bmp", "image/x-ms-bmp")),
    "tiff": ("tif", ("image/tiff", "image/tif")),
    "gif": ("gif", ("image/gif",)),
}
EXTENSIONS = ("jpeg", "jpg", "bmp", "png", "tiff", "tif", "gif")
STORED_EXTENSIONS = tuple(ext for ext, _ in FORMATS.values())
CONTENT_TYPES = tuple(kind for _, kinds in FORMATS.values() for kind in kinds)
# content types under which an upload is taken as raw image bytes (told apart by the bytes themselves)
UPLOAD_TYPES = (*CONTENT_TYPES, "application/octet-stream")


def sniff(data: bytes) -> str | None:
    """The format the bytes' signature names, or None: the bytes decide, not the name or the header."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if data.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    return None


def require_image(data: bytes, *, field: str, url: str | None = None) -> str:
    """The format of image bytes; anything else is refused (415), naming the field."""
    found = sniff(data)
    if found is None:
        raise ImageRefused("is not a JPEG, PNG, BMP, TIFF or GIF image (judged by its first bytes)",
                           field=field, url=url, status=415)
    return found


def url_extension(url: str) -> str:
    """The extension of a URL's last path segment, lower-cased ('' when it has none)."""
    suffix = PurePosixPath(urlsplit(url).path).suffix
    return suffix[1:].lower()


def media_type(header: str | None) -> str:
    """A Content-Type header without its parameters, lower-cased."""
    return (header or "").split(";")[0].strip().lower()
