"""Thumbnails of a job's image files: the API reads the object from S3, scales it down and keeps it a while.

The browser never gets an S3 URL (no presigned link, nothing public): it asks the API, which
checks the session like every page. Decoding is Pillow's, with its decompression-bomb limit
made an error; the thumbnail cache is bounded in bytes.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections import OrderedDict

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ...errors import ImageRefused, NotFound
from ...models import JOB_ID_PATTERN
from ..state import Api, api
from .views import is_image

router = APIRouter(prefix="/dashboard", include_in_schema=False)
CACHE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 64_000_000


class ThumbnailCache:
    """Least recently used thumbnails, at most CACHE_BYTES in all."""

    def __init__(self, limit: int = CACHE_BYTES):
        self.limit = limit
        self._items: OrderedDict[tuple, tuple[bytes, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: tuple, item: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = item
            self._bytes += len(item[0])
            while self._bytes > self.limit and self._items:
                _, (data, _) = self._items.popitem(last=False)
                self._bytes -= len(data)


CACHE = ThumbnailCache()


def scale_down(data: bytes, size: int) -> tuple[bytes, str]:
    """The image at most size x size, as JPEG (PNG when it has transparency); ImageRefused when it is no image we can read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise ImageRefused(f"is {image.width}x{image.height} pixels, too large to show", field="file",
                                       status=413)
                image.draft("RGB", (size, size))  # JPEG: decode at a fraction of the size
                image = ImageOps.exif_transpose(image)
                image.thumbnail((size, size))
                alpha = image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)
                out = io.BytesIO()
                if alpha:
                    image.convert("RGBA").save(out, "PNG", optimize=True)
                    return out.getvalue(), "image/png"
                image.convert("RGB").save(out, "JPEG", quality=80)
                return out.getvalue(), "image/jpeg"
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError, OSError,
            ValueError) as exc:
        raise ImageRefused(f"cannot be read as an image ({type(exc).__name__})", field="file", status=415) from None


@router.get("/jobs/{job_id}/files/{file_id}/thumbnail")
def thumbnail(job_id: str = Path(pattern=JOB_ID_PATTERN.pattern), file_id: str = Path(pattern=r"^[0-9a-f]{40}$"),
              size: int = Query(160, ge=32, le=640), state: Api = Depends(api)) -> Response:
    task = state.store.reports.file(job_id, file_id)
    if task is None:
        raise NotFound(f"job {job_id} has no file {file_id}")
    if not is_image(task.file_key):
        raise ImageRefused(f"{task.file_key} is not an image file", field="file", status=415)
    if task.size > state.settings.api_fetch_max_bytes:
        raise ImageRefused(f"{task.file_key} is {task.size} bytes, more than SPOTBOT_API_FETCH_MAX_BYTES "
                           f"({state.settings.api_fetch_max_bytes})", field="file", status=413)
    key = (task.bucket, task.file_key, task.size, size)
    found = CACHE.get(key)
    if found is None:
        found = scale_down(state.storage.read(task.bucket, task.file_key), size)
        CACHE.put(key, found)
    data, media = found
    return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=300"})
