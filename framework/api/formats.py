"""The image formats the API takes (seed 000's list: jpeg/jpg, bmp, png, tiff/tif, gif), told by their bytes.

An image is judged without being decoded: its signature names the format, then that one
format's Pillow reader (never the others Pillow knows, EPS among them, which runs Ghostscript)
parses its header for its size, which must stay within SPOTBOT_API_MAX_PIXELS: a file of a few
hundred bytes can declare billions of pixels (a decompression bomb), and the bot decoding it pays.
"""

from __future__ import annotations

import io
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from ..errors import ImageRefused
from ..settings import Settings

# format -> (the extension its stored key gets, content types that announce it)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jpeg": ("jpg", ("image/jpeg", "image/jpg", "image/pjpeg")),
    "png": ("png", ("image/png",)),
    "bmp": ("bmp", ("image/bmp", "image/x-bmp", "image/x-ms-bmp")),
    "tiff": ("tif", ("image/tiff", "image/tif")),
    "gif": ("gif", ("image/gif",)),
}
# our format names -> Pillow's: what a bot may pass as Image.open(..., formats=PILLOW_FORMATS) to decode no other
PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "gif": "GIF"}
DEFAULT_MAX_PIXELS: int = Settings.model_fields["api_max_pixels"].default
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


def require_image(data: bytes, *, field: str, url: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """The format of image bytes of at most max_pixels; anything else is refused (415, 413 when too large), naming
    the field. Only the header is read: no pixel is decoded."""
    found = sniff(data)
    if found is None:
        raise ImageRefused("is not a JPEG, PNG, BMP, TIFF or GIF image (judged by its first bytes)",
                           field=field, url=url, status=415)
    width, height = dimensions(data, found, field=field, url=url)
    if width * height > max_pixels:
        raise ImageRefused(f"is {width} x {height} pixels, more than {max_pixels} (SPOTBOT_API_MAX_PIXELS); "
                           "refused before decoding", field=field, url=url, status=413)
    return found


def dimensions(data: bytes, found: str, *, field: str, url: str | None = None) -> tuple[int, int]:
    """(width, height) from the image's header, parsed by its own format's reader alone.

    The reader is called directly rather than through Image.open, which would apply Pillow's own
    pixel limit before ours could name the size; decoding would only start at load().
    """
    from PIL import Image  # the api extra's; imported here so the CLI does not pay for it

    Image.init()
    reader, _ = Image.OPEN[PILLOW_FORMATS[found]]
    try:
        with reader(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # Pillow raises many kinds for a broken header
        raise ImageRefused(f"is not a readable {found.upper()} image (its header is broken)", field=field, url=url,
                           status=415) from None


def url_extension(url: str) -> str:
    """The extension of a URL's last path segment, lower-cased ('' when it has none)."""
    suffix = PurePosixPath(urlsplit(url).path).suffix
    return suffix[1:].lower()


def media_type(header: str | None) -> str:
    """A Content-Type header without its parameters, lower-cased."""
    return (header or "").split(";")[0].strip().lower()
