"""The fault suite's search for secrets (conftest.secrets_stay_home) finds one wherever it is planted."""

from __future__ import annotations

import base64

from .conftest import API_TOKEN, ES_PASSWORD, ES_USER, forms, leaks


def test_the_search_finds_a_secret_planted_in_a_log_a_file_or_an_output(tmp_path_factory):
    # planted outside the test's own directories, which the fixture searches after the test
    planted = tmp_path_factory.mktemp("planted")
    (planted / "logs" / "job-1").mkdir(parents=True)
    (planted / "logs" / "job-1" / "worker-1.log").write_text(f"INFO connecting with token {API_TOKEN}\n")
    header = base64.b64encode(f"{ES_USER}:{ES_PASSWORD}".encode())
    (planted / "data.bin").write_bytes(b"\x00\x01Authorization: Basic " + header + b"\xff")
    (planted / "clean.log").write_text("nothing to see\n")
    outputs = [("spotbot status job-1", f"error: bad password {ES_PASSWORD}"), ("spotbot jobs list", "[]")]

    found = leaks(forms(API_TOKEN) + forms(ES_PASSWORD, ES_USER), [planted], outputs)

    assert len(found) == 3, found
    assert any("worker-1.log" in line for line in found) and any("data.bin" in line for line in found)
    assert any("spotbot status job-1" in line for line in found)
