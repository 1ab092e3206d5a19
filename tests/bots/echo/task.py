"""A test bot whose behaviour each input file chooses by its first word.

RAISE -> main_task raises; SLOW <seconds> -> sleeps first; EXIT -> the worker process dies;
BADRESULT -> returns something that cannot be serialized. Anything else is echoed through
the endpoint. Every call is appended to $ECHO_CALLS_LOG (if set) so tests can count calls.
"""

import json
import os
import time

from framework import bot


def main_task(file_name):
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
    if word == "BADRESULT":
        return {"not json": {1, 2, 3}}
    if word == "SLOW":
        time.sleep(float(rest.split()[0]))
    answer = json.loads(bot.invoke_endpoint({"text": text}))
    extra = {}
    for name in os.environ.get("endpoint_name", "").split(",")[1:]:
        extra[name] = json.loads(bot.invoke_endpoint({"text": text}, endpoint_name=name))
    return {"key": file_name, "upper": answer["upper"], "labels": [answer["kind"], "echo"], "extra": extra}
