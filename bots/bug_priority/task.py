"""The bug_priority bot: the priority of a bug report (Optional, Trivial, Minor, Major, Critical, Blocker).

A report is a .txt file (its text) or a .json file with "summary" / "title" and "description" /
"body" fields (an issue as a tracker exports it). The endpoint answers in BlazingText's format;
the returned dict is written to s3://<output>/<file key>.json, its label (the priority) is
indexed, and the endpoint's probability is the file's confidence, so `spotbot stats` can average it.
main_batch classifies a group of reports in one endpoint call; main_task one report.
"""

import json
import sys
from pathlib import Path

from framework import bot

sys.path.insert(0, str(Path(__file__).resolve().parent))
from priority_text import PRIORITIES  # noqa: E402

MAX_CHARS = 100_000  # a pasted log can make a report huge; the words at its start say what it is about
INSTANCES_PER_CALL = 100  # reports per endpoint call in main_batch (the endpoint takes up to 1000)


def report_text(data: bytes, file_name: str) -> str:
    text = data.decode("utf-8", "replace")
    if file_name.lower().endswith(".json"):
        issue = json.loads(text)
        if not isinstance(issue, dict):
            raise ValueError(f"{file_name} is not a JSON object with summary/description fields")
        parts = [issue.get(name) for name in ("summary", "title", "description", "body")]
        text = "\n".join(part for part in parts if isinstance(part, str))
    if not text.strip():
        raise ValueError(f"{file_name} holds no report text")
    return text[:MAX_CHARS]


def priority(answer: dict) -> dict:
    """One instance's answer in BlazingText's format -> the file's result."""
    label, prob = answer["label"][0], answer["prob"][0]
    if label not in PRIORITIES:
        raise ValueError(f"the model answered {label!r}, which is not one of {', '.join(PRIORITIES)}")
    return {"labels": [PRIORITIES[label]], "priority": PRIORITIES[label], "label": label, "confidence": prob}


def main_task(file_name):
    text = report_text(bot.read_input(file_name), file_name)
    answer = json.loads(bot.invoke_endpoint({"instances": [text]}))
    return priority(answer[0])


def main_batch(file_names):
    """A group of reports classified together: BlazingText's format takes many instances per call, so the
    group costs one endpoint call per INSTANCES_PER_CALL reports. One result per file, in order."""
    texts = [report_text(bot.read_input(name), name) for name in file_names]
    results = []
    for start in range(0, len(texts), INSTANCES_PER_CALL):
        part = texts[start:start + INSTANCES_PER_CALL]
        answers = json.loads(bot.invoke_endpoint({"instances": part}))
        if not isinstance(answers, list) or len(answers) != len(part):
            raise ValueError(f"the endpoint answered {len(answers) if isinstance(answers, list) else 'no list'} "
                             f"predictions for {len(part)} instances")
        results += [priority(answer) for answer in answers]
    return results
