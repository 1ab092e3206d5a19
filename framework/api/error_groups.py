"""/jobs/{job_id}/errors: a job's ERROR files grouped by cause (`spotbot errors` over HTTP)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from .errors import responses
from .jobs import JobId
from .state import Api, api

router = APIRouter(prefix="/jobs", tags=["jobs"])


class ExampleFile(BaseModel):
    file_key: str
    error: str = ""


class ErrorGroupOut(BaseModel):
    signature: str = Field(description="the error with numbers, paths, keys, ids and addresses masked")
    count: int
    first_at: int | None = Field(description="when the group's first file failed (epoch ms)")
    last_at: int | None = Field(description="when its last file failed (epoch ms)")
    examples: list[ExampleFile]


class ErrorGroupsOut(BaseModel):
    job_id: str
    errors: int = Field(description="ERROR files of the job")
    other: int = Field(description="ERROR files in groups beyond those listed")
    unsigned: int = Field(description="ERROR files without a signature (they failed before signatures existed)")
    groups: list[ErrorGroupOut]


@router.get("/{job_id}/errors", response_model=ErrorGroupsOut, responses=responses(404, 422, 503))
def error_groups(job_id: str = JobId, top: int = Query(50, ge=1, le=1000, description="groups, largest first"),
                 examples: int = Query(3, ge=0, le=20, description="example files per group"),
                 state: Api = Depends(api)) -> ErrorGroupsOut:
    """The job's failed files grouped by error signature; POST /jobs/{job_id}/retry with `signature` reruns one group."""
    state.store.jobs.get(job_id)
    found = state.store.reports.error_groups(job_id, size=top, examples=examples)
    return ErrorGroupsOut(job_id=job_id, errors=found.errors, other=found.other, unsigned=found.unsigned, groups=[
        ErrorGroupOut(signature=g.signature, count=g.count, first_at=g.first_at, last_at=g.last_at,
                      examples=[ExampleFile(file_key=e["file_key"], error=e.get("error", "")) for e in g.examples])
        for g in found.groups])
