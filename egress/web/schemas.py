"""JSON bodies of the API; their types come from the workflow's enums, so OpenAPI lists the values."""

from __future__ import annotations

from pydantic import BaseModel, Field

from egress.review.workflow import Decision, FileKind, Visibility
from hub.kernel.db import MAX_ROW_ID

TEXT = 10_000


class NewRequest(BaseModel):
    project: str = Field(max_length=40)
    title: str = Field(max_length=200)


class NewGroup(BaseModel):
    name: str = Field(max_length=100)
    context: str = Field(default="", max_length=TEXT)
    controls: str = Field(default="", max_length=TEXT)


class GroupText(BaseModel):
    context: str = Field(max_length=TEXT)
    controls: str = Field(max_length=TEXT)


class NewFile(BaseModel):
    group_id: int = Field(ge=1, lt=MAX_ROW_ID)
    path: str = Field(max_length=1000)
    kind: FileKind


class NewVote(BaseModel):
    decision: Decision
    sha256: str = Field(pattern="^[0-9a-f]{64}$", description="the SHA-256 of the file version reviewed")
    comment: str = Field(default="", max_length=TEXT)
    visibility: Visibility = Visibility.CHECKERS
    override: bool = Field(default=False, description="approve although no re-run reproduced the file")


class NewComment(BaseModel):
    body: str = Field(max_length=TEXT)
    visibility: Visibility = Visibility.AUTHOR
    file_id: int | None = Field(default=None, ge=1, lt=MAX_ROW_ID)


class Note(BaseModel):
    comment: str = Field(default="", max_length=TEXT)


class ErrorBody(BaseModel):
    detail: str
