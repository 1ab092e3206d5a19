"""The echo bot as main_batch: one call reads a group of files and sends their texts to the endpoint
one by one, answering one result per file in order. A group holding a file that says RAISE fails as a
whole. Every call is appended to $ECHO_CALLS_LOG (if set) with its keys, so tests can see the groups."""

import json
import os

from framework import bot


def main_batch(file_names):
    texts = [bot.read_input(name).decode() for name in file_names]
    log = os.environ.get("ECHO_CALLS_LOG")
    if log:
        with open(log, "a") as calls:
            calls.write(json.dumps({"keys": file_names, "pid": os.getpid()}) + "\n")
    if any(text.startswith("RAISE") for text in texts):
        raise ValueError(f"a bad file among {len(file_names)}")
    answers = [json.loads(bot.invoke_endpoint({"text": text})) for text in texts]
    return [{"key": name, "upper": answer["upper"], "labels": [answer["kind"]]} for name, answer in zip(file_names, answers)]
