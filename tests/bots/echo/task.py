"""A test bot whose behaviour each input file chooses by its first word.

RAISE -> main_task raises; SLOW <seconds> -> sleeps first; EXIT -> the worker process dies;
BADRESULT -> returns something that cannot be serialized; ENV -> the names of its SPOTBOT_* variables; LONGLABEL <n> -> a label of n bytes.
Anything else is echoed through the endpoint. Every call is appended to $ECHO_CALLS_LOG (if set) so tests can count calls, and
its span (start and end, epoch seconds) to $ECHO_SPANS_LOG (if set) so tests can see overlaps.
"""

import json
import os
import time

from framework import bot


def main_task(file_name):
    started = time.time()
    try:
        return _echo(file_name)
    finally:
        spans = os.environ.get("ECHO_SPANS_LOG")
        if spans:
            with open(spans, "a") as log:
                log.write(json.dumps({"key": file_name, "start": started, "end": time.time()}) + "\n")


def _echo(file_name):
    text = bot.read_input(file_name).decode("utf-8", "replace")
    log = os.environ.get("ECHO_CALLS_LOG")
    if log:
        with open(log, "a") as calls:
            calls.write(json.dumps({"key": file_name, "pid": os.getpid()}) + "\n")
    word, _, rest = text.partition(" ")
    if word == "RAISE":
        raise ValueError(f"asked to fail by {file_name}")
    if word == "EXIT":
        os._exit(17)
    if word == "ENV":
        return {"key": file_name, "labels": ["env"], "spotbot": sorted(n for n in os.environ if n.startswith("SPOTBOT_")),
                "inherited": os.environ.get("ECHO_INHERITED", "")}
    if word == "BADRESULT":
        return {"not json": {1, 2, 3}}
    if word == "LONGLABEL":
        return {"key": file_name, "labels": ["x" * int(rest.split()[0])]}
    if word == "SLOW":
        time.sleep(float(rest.split()[0]))
    answer = json.loads(bot.invoke_endpoint({"text": text}))
    extra = {}
    for name in os.environ.get("endpoint_name", "").split(",")[1:]:
        extra[name] = json.loads(bot.invoke_endpoint({"text": text}, endpoint_name=name))
    return {"key": file_name, "upper": answer["upper"], "labels": [answer["kind"], "echo"], "extra": extra}
