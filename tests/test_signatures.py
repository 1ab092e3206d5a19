"""Error signatures: the same cause gives the same signature whatever file, number, path, key, id or address it names."""

import pytest

from framework.signatures import MAX_LENGTH, signature


@pytest.mark.parametrize("first, second, expected", [
    ("ValueError: asked to fail by in/f3.txt", "ValueError: asked to fail by in/deeper/f17.txt",
     "ValueError: asked to fail by <path>"),
    ("StorageError: cannot read s3://docs/in/0007.png (404)", "StorageError: cannot read s3://other/x.png (404)",
     "StorageError: cannot read <s3> (<n>)"),
    ("EndpointError: cannot reach http://127.0.0.1:43211/invocations: timed out after 30.0 s",
     "EndpointError: cannot reach http://10.1.2.3:8080/invocations: timed out after 120 s",
     "EndpointError: cannot reach <url> timed out after <n> s"),
    ("worker lost while processing 3 time(s) (workers: w0-3f2a1c, w1-ab12cd, w0-99aa00)",
     "worker lost while processing 2 time(s) (workers: w4-000fff)",
     "worker lost while processing <n> time(s) (workers: <id>)"),
    ("ConnectionError: 10.0.0.5:9200 refused", "ConnectionError: [fe80::1]:9200 refused", "ConnectionError: <addr> refused"),
    ("ValueError: shape (3, 224, 224) is not (1, 224)", "ValueError: shape (4, 4) is not (2, 2)",
     "ValueError: shape (<n>) is not (<n>)"),
    ("KeyError: object 3f2a9c0d1e2b3c4d5e6f missing", "KeyError: object 123e4567-e89b-12d3-a456-426614174000 missing",
     "KeyError: object <id> missing"),
    ("OSError: [Errno 2] No such file: '/tmp/a/b.bin'", "OSError: [Errno 13] No such file: '/var/x'",
     "OSError: [Errno <n>] No such file: '<path>'"),
    ("FileNotFoundError: photo_2024.jpg", "FileNotFoundError: scan-7.PDF", "FileNotFoundError: <file>"),
])
def test_variable_parts_are_masked(first, second, expected):
    assert signature(first) == signature(second) == expected


def test_different_causes_stay_apart():
    assert signature("KeyError: 'labels'") != signature("KeyError: 'scores'")
    assert signature("ValueError: bad image") != signature("TypeError: bad image")
    # words with digits that name a thing, not a value, are kept
    assert signature("UnicodeDecodeError: utf-8 cannot decode byte 0xff") == "UnicodeDecodeError: utf-8 cannot decode byte <n>"
    assert signature("TypeError: int64 is not JSON serializable") == "TypeError: int64 is not JSON serializable"


def test_whitespace_length_and_empty():
    assert signature("RuntimeError:\n  line one\n\tline two ") == "RuntimeError: line one line two"
    long = signature("x" * 5000)
    assert len(long) == MAX_LENGTH and long.endswith("…")
    assert signature("") == "" and signature("   ") == ""
