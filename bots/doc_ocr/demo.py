"""`make demo`: OCR a folder of documents end to end on the embedded stack.

Starts the stack, writes sample documents (rendered ones with known text, and real scans),
uploads them to the embedded S3, registers the doc_ocr bot, submits a job with a progress
bar, and prints a table of the results, checking the rendered documents word for word (the
model runs some words together: the table says which, and how many words it read).
Every step is the `spotbot` command a user would type.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from samples import write_samples  # noqa: E402

BUCKET = "spotbot-demo"


def spotbot(*args: str, capture: bool = False) -> str:
    command = [str(Path(sys.executable).parent / "spotbot"), *args]
    print("$ spotbot " + " ".join(args), flush=True)
    result = subprocess.run(command, text=True, stdout=subprocess.PIPE if capture else None)
    if result.returncode not in (0, 3):
        sys.exit(f"spotbot {args[0]} failed with exit code {result.returncode}")
    return result.stdout or ""


def upload(folder: Path, prefix: str) -> int:
    from framework.settings import Settings
    from framework.storage import Storage

    storage = Storage(Settings.from_env())
    storage.ensure_bucket(BUCKET)
    count = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "expected.json":
            storage.write(BUCKET, prefix + path.relative_to(folder).as_posix(), path.read_bytes())
            count += 1
    return count


def words(text: str) -> list[str]:
    """The words of a text, in order (runs of spaces and line breaks are one separator)."""
    return text.split()


def check(found: str, expected: str) -> str:
    """'exact' when the words match with their spaces; else how many of the expected words were read as such.

    OCR can run two words into one ("SHIPPING NOTICE" read as "SHIPPINGNOTICE"): that is a
    difference, and the table says so rather than comparing the characters alone.
    """
    if words(found) == words(expected):
        return "exact"
    read = set(words(found))
    return f"{sum(1 for word in words(expected) if word in read)}/{len(words(expected))} words"


def main() -> int:
    started = time.monotonic()
    spotbot("local", "up")
    run = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp:
        expected = write_samples(Path(tmp))
        count = upload(Path(tmp), f"docs/{run}/")
    print(f"uploaded {count} files to s3://{BUCKET}/docs/{run}/", flush=True)
    from framework.settings import Settings

    # with SPOTBOT_LAUNCHER=docker the same bot runs from its images (`make images` builds them)
    config = "bot_config.docker.json" if Settings.from_env().launcher == "docker" else "bot_config.json"
    spotbot("bots", "register", str(HERE / config), capture=True)
    job_id = f"demo-{run}"
    spotbot("submit", "--bot", "doc_ocr", "--input", f"s3://{BUCKET}/docs/{run}/",
            "--output", f"s3://{BUCKET}/out/{run}/", "--bots", "2", "--job-id", job_id, "--wait")
    rows = [json.loads(line) for line in spotbot("results", job_id, capture=True).splitlines()]

    from framework.storage import Storage, parse_uri

    storage = Storage(Settings.from_env())
    checked = exact = 0
    print(f"\n{'file':40} {'status':10} {'check':10} labels")
    for row in rows:
        name = row["file_key"].split(f"docs/{run}/", 1)[1]
        verdict = ""
        if row["status"] == "COMPLETED" and expected.get(name):
            location = parse_uri(row["output_uri"])
            verdict = check(json.loads(storage.read(location.bucket, location.prefix))["text"], expected[name])
            checked += 1
            exact += verdict == "exact"
        print(f"{name:40} {row['status']:10} {verdict:10} {', '.join(row['labels'][:8])}")
        if row["error"]:
            print(f"{'':40} error: {row['error']}")
    print(f"\n{len(rows)} files, {checked} with known text checked: {exact} read exactly, word for word; "
          f"outputs under s3://{BUCKET}/out/{run}/; {time.monotonic() - started:.0f}s in all")
    print(f"see more: spotbot status {job_id}; spotbot results {job_id} --format csv")
    # the demo shows the pipeline at work: it fails when a file was not worked, not when the model misreads
    return 1 if any(r["status"] != "COMPLETED" for r in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("SPOTBOT_HOME", str(Path.cwd() / ".spotbot"))
    sys.exit(main())
