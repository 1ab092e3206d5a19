"""Error signatures: a file's error with its variable parts masked, so files that failed for one cause group together.

`ValueError: cannot read s3://docs/in/0007.png at offset 4096` and the same error of another
file both become `ValueError: cannot read <s3> at offset <n>`. A signature is a pure function
of the error text: every worker, of any version, computes the same one, and a terms
aggregation over it gives the groups (`spotbot errors`) without reading the files.
"""

from __future__ import annotations

import re

MAX_LENGTH = 300

# in order: the wide patterns (URIs, paths) before the narrow ones (numbers) that would cut them up
_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bs3a?://\S+", re.IGNORECASE), "<s3>"),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.IGNORECASE), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE), "<id>"),
    # IPv6 (at least three groups with colons) and IPv4, with an optional port
    (re.compile(r"\[?\b(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\b\]?(?::\d+)?", re.IGNORECASE), "<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<addr>"),
    (re.compile(r"\blocalhost:\d+\b"), "<addr>"),
    # paths: absolute (/a/b, C:\a), or relative with a folder (in/f3.txt); the whole token up to a quote or space
    (re.compile(r"(?<![\w<])(?:[A-Za-z]:\\|~?/)[^\s'\"<>(),;]*"), "<path>"),
    (re.compile(r"(?<![\w<])[\w.-]+(?:/[\w.@=+-]+)+/?"), "<path>"),
    # a bare file name with an extension a data file has
    (re.compile(r"(?<![\w<])[\w.-]+\.(?:jpe?g|png|gif|bmp|tiff?|webp|heic|txt|json|jsonl|csv|tsv|pdf|xml|html?|"
                r"gz|zip|tar|parquet|avro|wav|mp3|flac|mp4|mov|avi|mkv|docx?|xlsx?|pptx?|npy|npz)\b", re.IGNORECASE),
     "<file>"),
    # ids: hex of 8+ with a digit and a letter (digests, object ids), or tokens of letters and digits joined
    # by '-' or '_' that hold a digit (worker ids w0-3f2a1c, job ids doc_ocr-20261121-120000-ab12)
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<id>"),
    (re.compile(r"\b(?=[\w-]{6,})(?=[\w-]*\d)(?=[\w-]*[A-Za-z])[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+\b"), "<id>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<n>"),
    (re.compile(r"(?<![\w.])(?<![A-Za-z]-)[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w.])", re.IGNORECASE), "<n>"),
]
# a list of masked parts ("<id>, <id>, <id>", "(<n>, <n>)") is one part: its length varies with the data
_REPEATS = re.compile(r"<(\w+)>(?:\s*[,;x×]\s*<\1>)+")
_SPACE = re.compile(r"\s+")


def signature(error: str) -> str:
    """The error's cause: its text with numbers, paths, S3 keys, URLs, ids and addresses masked; '' for no error."""
    text = _SPACE.sub(" ", error or "").strip()
    if not text:
        return ""
    for pattern, mask in _MASKS:
        text = pattern.sub(mask, text)
    text = _REPEATS.sub(r"<\1>", text)
    if len(text) > MAX_LENGTH:
        text = text[:MAX_LENGTH - 1] + "…"
    return text
