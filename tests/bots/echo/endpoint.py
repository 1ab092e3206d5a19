"""Test endpoint: upper-cases the text it is sent and says whether it is short or long."""

import os


def model_fn(model_dir):
    marker = os.path.join(model_dir, "threshold.txt")
    return {"threshold": int(open(marker).read()) if os.path.exists(marker) else 10}


def predict_fn(data, model):
    text = data["text"]
    return {"upper": text.upper(), "kind": "short" if len(text) < model["threshold"] else "long", "pid": os.getpid()}
