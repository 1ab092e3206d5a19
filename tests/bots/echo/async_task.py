"""The echo bot as an async main_task: it awaits a sleep of the seconds its file names, then
answers without the endpoint. Spans (start and end, epoch seconds) go to $ECHO_SPANS_LOG."""

import asyncio
import json
import os
import time

from framework import bot


async def main_task(file_name):
    started = time.time()
    seconds = float(bot.read_input(file_name).decode().split()[1])
    await asyncio.sleep(seconds)
    log = os.environ.get("ECHO_SPANS_LOG")
    if log:
        with open(log, "a") as spans:
            spans.write(json.dumps({"key": file_name, "start": started, "end": time.time()}) + "\n")
    return {"key": file_name, "slept": seconds}
