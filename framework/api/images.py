"""Seed 000's ImageLabeller routes (/submit-image, /get-image-label) and the richer /images.

The seed's bodies were not even JSON and its unknown ids answered an empty label; here both
routes answer JSON, and an unknown id is a 404.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from ..errors import ImageRefused
from .errors import responses
from .fetch import FetchedImage
from .formats import EXTENSIONS, UPLOAD_TYPES, media_type, require_image
from .labelling import CLASSIFIED, ERROR, NOT_CLASSIFIED, ImageState
from .state import Api, api

router = APIRouter(tags=["images"])
MAX_JSON_BYTES = 16 * 1024
URL_FIELD = Field(min_length=1, max_length=2048, description="an http(s) URL of a JPEG, PNG, BMP, TIFF or GIF image")


class ImageUrl(BaseModel):
    """POST /images as JSON: the URL to fetch the image from."""

    model_config = ConfigDict(extra="forbid")

    url: str = URL_FIELD


class SubmittedImage(BaseModel):
    ImageId: str = Field(description="the image's id, for /get-image-label")


class ImageLabel(BaseModel):
    ImageLabel: str = Field(description="the top-5 ImageNet classes joined by ', ', NOT_CLASSIFIED until then, or ERROR")
    Error: str | None = Field(None, description="why labelling failed (ERROR only)")


class Accepted(BaseModel):
    id: str
    status: str = Field(description=NOT_CLASSIFIED)


class Label(BaseModel):
    label: str = Field(description="an ImageNet class name")
    score: float | None = Field(None, description="the model's probability for it")


class Image(BaseModel):
    id: str
    status: str = Field(description=f"{NOT_CLASSIFIED} until the bot has worked it, then {CLASSIFIED} or {ERROR}")
    labels: list[Label] = Field(description="best first; empty until classified")
    error: str | None = None


def image_out(state: ImageState) -> Image:
    return Image(id=state.id, status=state.status, labels=[Label(label=n, score=s) for n, s in state.labels],
                 error=state.error or None)


@router.get("/submit-image", response_model=SubmittedImage, responses=responses(413, 415, 422, 503))
def submit_image(url: str = Query(min_length=1, max_length=2048,
                                  description=f"the image's URL, escaped; its name must end in .{', .'.join(EXTENSIONS)}"),
                 state: Api = Depends(api)) -> SubmittedImage:
    """Seed 000's SubmitImage: download the image (it must answer HTTP 200), store it, answer its id (NOT_CLASSIFIED)."""
    image = state.labelling.fetch(url, require_extension=True)
    return SubmittedImage(ImageId=state.labelling.submit(image))


@router.get("/get-image-label", response_model=ImageLabel, response_model_exclude_none=True,
            responses=responses(404, 422, 503))
def get_image_label(imageId: uuid.UUID = Query(description="an id from /submit-image"),  # noqa: N803 (the seed's name)
                    state: Api = Depends(api)) -> ImageLabel:
    """Seed 000's GetImageLabel: the top-5 classes joined by ', ', or NOT_CLASSIFIED while the bot has not worked it."""
    found = state.labelling.state(str(imageId))
    return ImageLabel(ImageLabel=found.seed_label(), Error=found.error or None)


UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": ImageUrl.model_json_schema()},
        **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in UPLOAD_TYPES},
    },
}


@router.post("/images", response_model=Accepted, status_code=202, openapi_extra={"requestBody": UPLOAD_BODY},
             responses=responses(413, 415, 422, 503))
async def post_image(request: Request, state: Api = Depends(api)) -> JSONResponse:
    """Label an image: JSON `{"url": ...}` to fetch it, or the image's bytes with an image Content-Type (or
    application/octet-stream). Answers 202 with its id; GET /images/{id} tells when it is classified."""
    kind = media_type(request.headers.get("content-type"))
    if kind == "application/json":
        body = await read_body(request, MAX_JSON_BYTES)
        try:
            url = ImageUrl.model_validate_json(body).url
        except ValidationError as exc:
            raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
        image = await run_in_threadpool(state.labelling.fetch, url)
    elif kind in UPLOAD_TYPES:
        data = await read_body(request, state.settings.api_fetch_max_bytes)
        image = FetchedImage(data, require_image(data, field="body", max_pixels=state.settings.api_max_pixels))
    else:
        raise ImageRefused(f"Content-Type {kind or 'none'!r} is neither application/json ({{\"url\": ...}}) nor an "
                           f"image ({', '.join(UPLOAD_TYPES)})", field="Content-Type", status=415)
    image_id = await run_in_threadpool(state.labelling.submit, image)
    return JSONResponse(Accepted(id=image_id, status=NOT_CLASSIFIED).model_dump(), status_code=202,
                        headers={"Location": f"/images/{image_id}"})


@router.get("/images/{image_id}", response_model=Image, responses=responses(404, 422, 503))
def get_image(image_id: uuid.UUID = Path(description="an id from POST /images or /submit-image"),
              state: Api = Depends(api)) -> Image:
    """An image's status and, once classified, its labels with scores, best first."""
    return image_out(state.labelling.state(str(image_id)))


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it grows past limit bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ImageRefused(f"is larger than {limit} bytes", field="body", status=413)
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > limit:
            raise ImageRefused(f"is larger than {limit} bytes", field="body", status=413)
    if not data:
        raise ImageRefused("is empty", field="body")
    return bytes(data)
