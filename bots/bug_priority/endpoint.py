"""Model endpoint of the bug_priority bot: fastText supervised classification, as BlazingText serves it.

Speaks BlazingText's inference format over the SageMaker contract: POST /invocations with
{"instances": ["text", ...]} (optionally "configuration": {"k": 2} for the k best labels)
answers [{"label": ["__label__4"], "prob": [0.71]}, ...], one entry per instance, best first.
The model is the model.bin of a model.tar.gz (model_s3_path), unpacked into model_dir: one that
bots/bug_priority/train.py wrote, or one that a BlazingText training job did. With dynamic batching
(predict_batch_fn), the instances of concurrent requests go to fastText in one call.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

if __package__:  # imported as bots.bug_priority.endpoint
    from .priority_text import normalize
else:  # loaded from its file (framework.endpoints.serving's python:endpoint.py): siblings by path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from priority_text import normalize

MODEL_FILE = "model.bin"
MAX_INSTANCES = 1000
MAX_K = 10


class Classifier:
    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()  # without batching the server answers requests in threads; one prediction at a time is plenty here

    def __call__(self, texts: list[str], k: int) -> list[dict]:
        with self.lock:
            labels, probs = self.model.predict([normalize(text) for text in texts], k=k)
        # fastText's softmax can round a hair above 1
        return [{"label": list(names), "prob": [round(min(1.0, float(p)), 4) for p in scores]}
                for names, scores in zip(labels, probs)]


def model_fn(model_dir):
    import fasttext

    path = Path(model_dir) / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"no {MODEL_FILE} in {model_dir}: train one with bots/bug_priority/train.py and set the "
                           "bot's model_s3_path to its model.tar.gz")
    return Classifier(fasttext.load_model(str(path)))


def input_fn(body, content_type):
    """{"instances": [str, ...], "configuration": {"k": int}} -> (texts, k); a ValueError names what is wrong."""
    if (content_type or "").split(";")[0].strip().lower() not in ("application/json", ""):
        raise ValueError(f"send application/json like {{\"instances\": [\"text\"]}}, not {content_type}")
    try:
        data = json.loads(body or b"")
    except ValueError:
        raise ValueError('the body is not JSON; send {"instances": ["text", ...]}') from None
    instances = data.get("instances") if isinstance(data, dict) else None
    if not isinstance(instances, list) or not instances or not all(isinstance(text, str) for text in instances):
        raise ValueError('"instances" must be a non-empty list of strings')
    if len(instances) > MAX_INSTANCES:
        raise ValueError(f'"instances" has {len(instances)} texts; send at most {MAX_INSTANCES} per request')
    configuration = data.get("configuration", {})
    if not isinstance(configuration, dict):
        raise ValueError('"configuration" must be an object like {"k": 2}')
    k = configuration.get("k", 1)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f'"configuration.k" must be a whole number from 1 to {MAX_K}')
    return instances, k


def predict_fn(data, classifier):
    texts, k = data
    return classifier(texts, k)


def predict_batch_fn(inputs, classifier):
    """Concurrent requests' instances in one fastText call per k (dynamic batching); each request
    gets back the answers of its own instances, in order."""
    callers_by_k: dict[int, list[int]] = {}
    for caller, (_texts, k) in enumerate(inputs):
        callers_by_k.setdefault(k, []).append(caller)
    answers: list = [None] * len(inputs)
    for k, callers in callers_by_k.items():
        flat = classifier([text for caller in callers for text in inputs[caller][0]], k)
        at = 0
        for caller in callers:
            count = len(inputs[caller][0])
            answers[caller], at = flat[at:at + count], at + count
    return answers


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
