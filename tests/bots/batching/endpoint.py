"""Test endpoint with dynamic batching: answers each input with its own id and the size of the batch it came in.

An input {"fail": true} makes its whole batch raise; {"short": true} makes the batch function
return one answer too few. predict_fn (used when batching is off) says so in its answer.
"""

import os
import time


def predict_batch_fn(inputs, model):
    if any(item.get("fail") for item in inputs):
        raise ValueError("asked to fail")
    time.sleep(0.05)  # a model call that takes a while, so concurrent requests queue up behind it
    answers = [{"id": item["id"], "double": item["value"] * 2, "batch": len(inputs), "via": "predict_batch_fn",
                "pid": os.getpid()} for item in inputs]
    return answers[:-1] if any(item.get("short") for item in inputs) else answers


def predict_fn(data, model):
    if data.get("fail"):
        raise ValueError("asked to fail")
    return {"id": data["id"], "double": data["value"] * 2, "batch": 1, "via": "predict_fn", "pid": os.getpid()}
