"""Dynamic batching in the endpoint server: concurrent requests share one predict_batch_fn call,
each caller gets exactly its own answer, a failing batch fails each of its requests alone.

Every endpoint here is a real serving process started by the process backend (so the
SPOTBOT_MAX_BATCH_* settings reach it through its environment), called over real HTTP."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import requests
from conftest import BOTS

from framework.endpoints import EndpointManager
from framework.models import EndpointSpec

BATCHING = BOTS / "batching" / "endpoint.py"


def start(settings, store, module=BATCHING, **batching):
    """A real endpoint process of `module`, started with the given batching settings."""
    settings = settings.model_copy(update=batching)
    spec = EndpointSpec(name="batching", image=f"python:{module}")
    return EndpointManager(settings, store).ensure_one(spec)


def call_together(url: str, bodies: list[dict]) -> list[requests.Response]:
    """POST every body at the same moment, each from its own thread and connection."""
    gate = threading.Barrier(len(bodies))

    def call(body):
        gate.wait()
        return requests.post(url + "/invocations", json=body, timeout=30)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(call, bodies))


def test_concurrent_callers_with_distinct_inputs_each_get_their_own_answer(settings, store):
    endpoint = start(settings, store, max_batch_size=8, max_batch_delay_ms=20)
    callers = 48
    seen_batches = []
    for round_ in range(3):
        bodies = [{"id": f"r{round_}-c{i}", "value": round_ * 1000 + i} for i in range(callers)]
        answers = call_together(endpoint.url, bodies)
        assert [a.status_code for a in answers] == [200] * callers, [a.text for a in answers if a.status_code != 200]
        for body, answer in zip(bodies, answers):
            got = answer.json()
            assert got["id"] == body["id"] and got["double"] == 2 * body["value"], (body, got)
            assert got["via"] == "predict_batch_fn" and answer.headers["X-Spotbot-Batch-Size"] == str(got["batch"])
            seen_batches.append(got["batch"])
    # batches were really gathered, and never past the configured size
    assert max(seen_batches) > 1 and max(seen_batches) <= 8, seen_batches


def test_a_batch_function_that_raises_answers_every_request_of_its_batch_with_500(settings, store):
    # a long delay and a batch of 4: four requests sent together are one batch
    endpoint = start(settings, store, max_batch_size=4, max_batch_delay_ms=3000)
    bodies = [{"id": i, "value": i} for i in range(3)] + [{"id": 3, "value": 3, "fail": True}]
    answers = call_together(endpoint.url, bodies)
    assert [a.status_code for a in answers] == [500] * 4
    assert all("predict_batch_fn failed on a batch of 4" in a.json()["error"] and "asked to fail" in a.json()["error"]
               for a in answers)

    # a batch function answering too few: the whole batch fails too, nobody gets a shifted answer
    bodies = [{"id": i, "value": i} for i in range(3)] + [{"id": 3, "value": 3, "short": True}]
    answers = call_together(endpoint.url, bodies)
    assert [a.status_code for a in answers] == [500] * 4
    assert all("returned 3 predictions for 4 inputs" in a.json()["error"] for a in answers)

    # and the server goes on answering the next batch
    answers = call_together(endpoint.url, [{"id": i, "value": i} for i in range(4)])
    assert [(a.status_code, a.json()["id"], a.json()["batch"]) for a in answers] == [(200, i, 4) for i in range(4)]


def test_a_bad_body_is_refused_alone_before_batching(settings, store):
    endpoint = start(settings, store, max_batch_size=4, max_batch_delay_ms=50)
    refused = requests.post(endpoint.url + "/invocations", data=b"{not json",
                            headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 400 and "JSONDecodeError" in refused.json()["error"]
    ok = requests.post(endpoint.url + "/invocations", json={"id": "x", "value": 4}, timeout=10)
    assert ok.status_code == 200 and ok.json()["double"] == 8


def test_batch_size_1_serves_each_request_with_predict_fn_as_before(settings, store):
    endpoint = start(settings, store, max_batch_size=1, max_batch_delay_ms=3000)
    bodies = [{"id": i, "value": i} for i in range(12)]
    answers = call_together(endpoint.url, bodies)
    assert [a.status_code for a in answers] == [200] * 12
    assert [(a.json()["id"], a.json()["via"], a.json()["batch"]) for a in answers] == [(i, "predict_fn", 1) for i in range(12)]
    assert all("X-Spotbot-Batch-Size" not in a.headers for a in answers)
    # one failing request fails alone
    answers = call_together(endpoint.url, [{"id": 0, "value": 0}, {"id": 1, "value": 1, "fail": True}])
    assert [a.status_code for a in answers] == [200, 500]


def test_batch_size_1_without_predict_fn_calls_the_batch_function_with_one_input(settings, store, tmp_path):
    module = tmp_path / "only_batch.py"
    module.write_text("def predict_batch_fn(inputs, model):\n    return [{'n': len(inputs), 'x': x} for x in inputs]\n")
    endpoint = start(settings, store, module=module, max_batch_size=1)
    answers = call_together(endpoint.url, [{"k": i} for i in range(6)])
    assert [a.json() for a in answers] == [{"n": 1, "x": {"k": i}} for i in range(6)]


def test_a_module_without_a_batch_function_is_served_as_before(settings, store):
    endpoint = start(settings, store, module=BOTS / "echo" / "endpoint.py", max_batch_size=16, max_batch_delay_ms=1000)
    texts = [f"text number {i}" for i in range(24)]
    answers = call_together(endpoint.url, [{"text": text} for text in texts])
    assert [a.json()["upper"] for a in answers] == [text.upper() for text in texts]
