"""Benchmark endpoint: a model that takes 10 ms per call."""

import time


def predict_fn(data, model):
    time.sleep(0.010)
    return {"ok": True, "n": len(data.get("text", ""))}
