"""Test task for worker containers, mounted into the byob worker image; each file's first word chooses.

EXIT <code> -> the worker process dies with that exit code; EAT <MiB> -> allocates that much
memory (past the container's limit: OOM-killed); SLOW <seconds> -> sleeps first; anything
else -> the text reversed. When /calls is mounted writable, every call is appended to
/calls/calls.jsonl, so a test can count how often each file was worked.
"""

import json
import os
import time

from framework import bot


def main_task(file_name):
    text = bot.read_input(file_name).decode()
    if os.path.isdir("/calls"):
        with open("/calls/calls.jsonl", "a") as calls:
            calls.write(json.dumps({"key": file_name, "worker": os.environ.get("SPOTBOT_WORKER_ID")}) + "\n")
    print(f"working on {file_name}", flush=True)
    word, _, rest = text.partition(" ")
    if word == "EXIT":
        os._exit(int(rest))
    if word == "EAT":
        hoard = bytearray(int(rest) * 2**20)
        hoard[::4096] = b"x" * len(hoard[::4096])  # touch every page, so the memory is really used
    if word == "SLOW":
        time.sleep(float(rest))
    return {"key": file_name, "reversed": text[::-1], "labels": ["reversed"]}
