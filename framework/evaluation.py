"""How well a job's labels match known ones: a confusion matrix, per-class precision and recall, accuracy.

The truth is a CSV of `file_key,label` rows (a header row of those two names is allowed), in S3
or on disk. A file's predicted label is the first of its labels; a file that ended without one
(ERROR, or not worked yet) is predicted NONE, so it counts against recall and accuracy.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, StorageError
from .models import FileStatus
from .storage import Storage, parse_uri
from .store import Store

NONE = "(none)"
MAX_TRUTH_BYTES = 256 * 1024 * 1024
SHOWN_KEYS = 5


def read_truth(source: str, storage: Storage) -> dict[str, str]:
    """file_key -> label from a CSV at s3://... or a local path; every error names the file and the line."""
    if source.startswith("s3://"):
        location = parse_uri(source, field="--truth")
        try:
            data = storage.read(location.bucket, location.prefix)
        except StorageError as exc:
            if getattr(exc, "code", "") in ("NoSuchKey", "404", "NotFound", "NoSuchBucket"):
                raise ConfigError(f"{source} does not exist", field="--truth") from None
            raise
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}", field="--truth") from None
    if len(data) > MAX_TRUTH_BYTES:
        raise ConfigError(f"{source} is larger than {MAX_TRUTH_BYTES // 2**20} MiB", field="--truth")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"in {source}: not UTF-8 text (byte {exc.start})", field="--truth") from None
    truth: dict[str, str] = {}
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text, newline=""), strict=True), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if number == 1 and [cell.strip().lower() for cell in row] == ["file_key", "label"]:
                continue
            if len(row) != 2:
                raise ConfigError(f"in {source} line {number}: expected 2 fields (file_key,label), found {len(row)}",
                                  field="--truth")
            key, label = row[0].strip(), row[1].strip()
            if not key or not label:
                raise ConfigError(f"in {source} line {number}: {'file_key' if not key else 'label'} is empty", field="--truth")
            if key in truth:
                raise ConfigError(f"in {source} line {number}: {key!r} is listed twice", field="--truth")
            truth[key] = label
    except csv.Error as exc:
        raise ConfigError(f"in {source}: not a valid CSV ({exc})", field="--truth") from None
    if not truth:
        raise ConfigError(f"{source} has no file_key,label rows", field="--truth")
    return truth


@dataclass
class Evaluation:
    job_id: str
    labels: list[str]  # rows of the matrix, in order; columns are these and NONE
    matrix: dict[str, dict[str, int]]  # truth -> predicted -> files
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluated: int = 0
    correct: int = 0
    unpredicted: int = 0  # files with a truth label that ended without a label (or are not done)
    files_without_truth: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.evaluated if self.evaluated else None

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "evaluated": self.evaluated, "correct": self.correct,
                "accuracy": None if self.accuracy is None else round(self.accuracy, 4), "labels": self.labels,
                "confusion": self.matrix, "per_class": self.per_class, "unpredicted": self.unpredicted,
                "files_without_truth": self.files_without_truth}


def evaluate(store: Store, job_id: str, truth: dict[str, str], *, order: list[str] | None = None,
             source: str = "the truth") -> Evaluation:
    """Compare each truth key's file with its label. Keys are the files' S3 keys, or keys relative to the job's input."""
    job = store.jobs.get(job_id)
    inputs = parse_uri(job.input_uri, field="input")
    found = store.files.by_key(job_id, inputs.bucket, truth)
    missing = [key for key in truth if key not in found]
    if missing and inputs.prefix:
        full = {inputs.key(key): key for key in missing}  # listed relative to the job's input prefix
        for full_key, task in store.files.by_key(job_id, inputs.bucket, full).items():
            found[full[full_key]] = task
    unknown = [key for key in truth if key not in found]
    if unknown:
        shown = ", ".join(repr(key) for key in unknown[:SHOWN_KEYS]) + (" ..." if len(unknown) > SHOWN_KEYS else "")
        raise ConfigError(f"{len(unknown)} key(s) of {source} are not files of job {job_id} (input {job.input_uri}): "
                          f"{shown}", field="--truth")
    predicted = {}
    for key, task in found.items():
        predicted[key] = task.labels[0] if task.status == FileStatus.COMPLETED and task.labels else NONE
    seen = list(dict.fromkeys([*truth.values(), *(p for p in predicted.values() if p != NONE)]))
    labels = [label for label in (order or []) if label in seen] + sorted(label for label in seen if label not in (order or []))
    matrix = {t: {p: 0 for p in [*labels, NONE]} for t in labels}
    for key, label in truth.items():
        matrix[label][predicted[key]] += 1
    result = Evaluation(job_id=job_id, labels=labels, matrix=matrix, evaluated=len(truth),
                        correct=sum(matrix[label][label] for label in labels),
                        unpredicted=sum(1 for key in truth if predicted[key] == NONE),
                        files_without_truth=max(0, job.total - len(truth)))
    for label in labels:
        true_positive = matrix[label][label]
        as_label = sum(matrix[t][label] for t in labels)
        support = sum(matrix[label].values())
        precision = true_positive / as_label if as_label else None
        recall = true_positive / support if support else None
        if precision is None or recall is None:
            f1 = None
        else:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        result.per_class[label] = {"precision": _round(precision), "recall": _round(recall), "f1": _round(f1),
                                   "support": support, "predicted": as_label}
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
