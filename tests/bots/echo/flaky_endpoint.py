"""A misbehaving endpoint for fault tests.

ALWAYS500 -> answers 500 every time; HANG -> never answers in time; anything else answers
500 on about a third of the calls and is otherwise the echo endpoint.
"""

import random
import time

from endpoint import predict_fn as echo


def predict_fn(data, model):
    text = data["text"]
    if text.startswith("ALWAYS500"):
        raise RuntimeError("this input always fails")
    if text.startswith("HANG"):
        time.sleep(30)
    if random.random() < 0.33:
        raise RuntimeError("a passing failure")
    return echo(data, {"threshold": 10})
