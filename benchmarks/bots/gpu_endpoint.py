"""Benchmark endpoint shaped like one GPU: a model call costs 20 ms + 1 ms per input, and calls run one at a time.

predict_fn is a call with one input (21 ms); predict_batch_fn is one call over the whole batch
(20 ms + 1 ms per input), which the server uses when dynamic batching is on
(SPOTBOT_MAX_BATCH_SIZE > 1) and predict_fn when it is off (SPOTBOT_MAX_BATCH_SIZE=1).
"""

import threading
import time

CALL_SECONDS = 0.020
ITEM_SECONDS = 0.001

_device = threading.Lock()  # one model call at a time, as on a single GPU


def _run(inputs):
    with _device:
        time.sleep(CALL_SECONDS + ITEM_SECONDS * len(inputs))
    return [{"ok": True, "n": len(item.get("text", "")), "batch": len(inputs)} for item in inputs]


def predict_fn(data, model):
    return _run([data])[0]


def predict_batch_fn(inputs, model):
    return _run(inputs)
