"""The raw floor: the per-file work with no bookkeeping at all, in plain processes.

`python -m benchmarks.raw KEYS_FILE SHARD SHARDS` reads its share of the keys and, for each,
GETs the object, POSTs it to the endpoint and PUTs the answer; settings come from the
environment (SPOTBOT_* and BENCH_*), exactly as a spotbot worker's would.
"""

from __future__ import annotations

import json
import os
import sys

import requests

from framework.settings import Settings
from framework.storage import Storage


def main(keys_file: str, shard: int, shards: int) -> None:
    storage = Storage(Settings.from_env())
    bucket, out_prefix, url = os.environ["BENCH_BUCKET"], os.environ["BENCH_OUT"], os.environ["BENCH_ENDPOINT"]
    session = requests.Session()
    keys = [k for i, k in enumerate(open(keys_file).read().split("\n")) if k and i % shards == shard]
    for key in keys:
        text = storage.read(bucket, key).decode()
        answer = session.post(url + "/invocations", data=json.dumps({"text": text}),
                              headers={"Content-Type": "application/json"}, timeout=60)
        answer.raise_for_status()
        storage.write(bucket, f"{out_prefix}/{key}.json", answer.content, "application/json")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
