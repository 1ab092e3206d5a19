"""The raw floor: the per-file work with no bookkeeping at all, in plain processes.

`python -m benchmarks.raw KEYS_FILE SHARD SHARDS [THREADS]` reads its share of the keys and, for
each, GETs the object, POSTs it to the endpoint and PUTs the answer, with THREADS files at once
(default 1); settings come from the environment (SPOTBOT_* and BENCH_*), exactly as a spotbot
worker's would, so it reads and writes through the same S3 client. It prints the wall-clock times
its first file began and its last one ended (JSON), its start (imports, clients) left out.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from framework.settings import Settings
from framework.storage import Storage


def main(keys_file: str, shard: int, shards: int, threads: int = 1) -> None:
    storage = Storage(Settings.from_env())
    bucket, out_prefix, url = os.environ["BENCH_BUCKET"], os.environ["BENCH_OUT"], os.environ["BENCH_ENDPOINT"]
    local = threading.local()  # a requests.Session per thread: sessions are not meant to be shared
    keys = [k for i, k in enumerate(open(keys_file).read().split("\n")) if k and i % shards == shard]

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def work(key: str) -> None:
        text = storage.read(bucket, key).decode()
        answer = session().post(url + "/invocations", data=json.dumps({"text": text}),
                              headers={"Content-Type": "application/json"}, timeout=60)
        answer.raise_for_status()
        storage.write(bucket, f"{out_prefix}/{key}.json", answer.content, "application/json")

    began = time.time()
    if threads == 1:
        for key in keys:
            work(key)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, keys))
    print(json.dumps({"began": began, "ended": time.time()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 1)
