"""The shipped OCR bot on the embedded stack: a real model over rendered documents."""

from __future__ import annotations

import json
import sys

from conftest import ROOT, spotbot, upload

from framework.storage import parse_uri

sys.path.insert(0, str(ROOT / "bots" / "doc_ocr"))
from samples import DOCUMENTS, render  # noqa: E402


def test_doc_ocr_reads_rendered_documents_word_for_word(settings, store, storage, bucket):
    import io

    chosen = dict(list(DOCUMENTS.items())[:3])
    for name, lines in chosen.items():
        image = io.BytesIO()
        render(lines).save(image, format="PNG")
        upload(storage, bucket, {f"in/{name}": image.getvalue()})
    assert spotbot(settings, "bots", "register", str(ROOT / "bots" / "doc_ocr" / "bot_config.json")).returncode == 0

    result = spotbot(settings, "submit", "--bot", "doc_ocr", "--input", f"s3://{bucket}/in/", "--output",
                     f"s3://{bucket}/out/", "--bots", "1", "--wait", "--json", timeout=600)

    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    rows = [json.loads(line) for line in spotbot(settings, "results", job["job_id"]).stdout.splitlines()]
    assert len(rows) == 3
    for row in rows:
        location = parse_uri(row["output_uri"])
        text = json.loads(storage.read(location.bucket, location.prefix))["text"]
        expected = "\n".join(chosen[row["file_key"].removeprefix("in/")])
        assert "".join(text.split()) == "".join(expected.split())
    invoice = next(r for r in rows if "INV-0042" in r["file_key"])
    assert "northwind" in invoice["labels"] and "invoice" in invoice["labels"]
