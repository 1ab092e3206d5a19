"""Benchmark endpoint: a model that takes 100 ms per call (files stay in flight long enough to be seen)."""

import time


def predict_fn(data, model):
    time.sleep(0.100)
    return {"ok": True, "n": len(data.get("text", ""))}
