"""A misbehaving endpoint for fault tests.

ALWAYS500 -> answers 500 every time; HANG -> never answers in time; anything else answers
500 on its first call and is the echo endpoint from then on. The failure is deterministic, not
random: with random failures, a file that drew several in a row within SPOTBOT_RETRY_SECONDS
would be charged an attempt, and the test asserting one attempt per file would be flaky.
"""

import threading
import time

from endpoint import predict_fn as echo


_seen: dict[str, int] = {}
_lock = threading.Lock()


def predict_fn(data, model):
    text = data["text"]
    if text.startswith("ALWAYS500"):
        raise RuntimeError("this input always fails")
    if text.startswith("HANG"):
        time.sleep(30)
    with _lock:
        _seen[text] = _seen.get(text, 0) + 1
        first = _seen[text] == 1
    if first:
        raise RuntimeError("a passing failure")
    return echo(data, {"threshold": 10})
