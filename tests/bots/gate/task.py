"""A test image bot: holds each image while the file $GATE_FILE exists, then labels it with its size.

So a test can see an image NOT_CLASSIFIED for as long as it likes, and then see that the bytes
the bot read are the bytes it sent.
"""

import os
import time

from framework import bot

HOLD_AT_MOST = 120.0


def main_task(file_name):
    data = bot.read_input(file_name)
    gate = os.environ.get("GATE_FILE", "")
    deadline = time.monotonic() + HOLD_AT_MOST
    while gate and os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"labels": [f"{len(data)} bytes", "gated"], "scores": [1.0, 0.5]}
