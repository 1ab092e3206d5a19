"""Benchmark endpoint: a model that answers after 50 ms (a remote model's latency), many calls at once."""

import time


def predict_fn(data, model):
    time.sleep(0.050)
    return {"ok": True, "n": len(data.get("text", ""))}
