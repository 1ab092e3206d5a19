"""The ancestor's work distribution, re-implemented only as a baseline to measure against.

As in awslabs/spot-tagging-bot-for-digital-assets: the files of a job are split into fixed
batches, one per worker; a worker fetches its batch's NOT_STARTED files with a size=10000
search plus scroll, and sends one update request per file when it is done with it. Same S3
reads and writes and the same endpoint as spotbot's benchmark bot. No leases: a dead
worker's batch is never finished.

`python -m benchmarks.ancestor record N_WORKERS` indexes the file documents (keys on stdin);
`python -m benchmarks.ancestor work BATCH_ID` is one worker.
"""

from __future__ import annotations

import json
import os
import sys

import requests
from elasticsearch import Elasticsearch, helpers
from opensearchpy import OpenSearch
from opensearchpy import helpers as opensearch_helpers

from framework.settings import Settings
from framework.storage import Storage
from framework.store.engines import Connection, detect


def index_name() -> str:
    return os.environ.get("BENCH_ANCESTOR_INDEX", "ancestor-files")


def client():
    """The Elasticsearch client, or opensearch-py's when the server is OpenSearch (the first refuses it).
    Both are called below only in the request-body form they share."""
    url = os.environ["BENCH_ES_URL"]
    if detect(Connection(url)) == "opensearch":
        return OpenSearch(url, timeout=120)
    return Elasticsearch(url, request_timeout=120)


def record(workers: int, keys: list[str], job_id: str) -> None:
    es = client()
    if es.indices.exists(index=index_name()):
        es.indices.delete(index=index_name())
    es.indices.create(index=index_name(), body={"mappings": {"properties": {
        "job_id": {"type": "keyword"}, "batch_id": {"type": "keyword"}, "status": {"type": "keyword"},
        "file_key": {"type": "keyword"}, "output": {"type": "object", "enabled": False}}}})
    actions = ({"_index": index_name(), "_id": f"{job_id}-{i}", "_source": {
        "job_id": job_id, "batch_id": str(i % workers), "status": "NOT_STARTED", "file_key": key}}
        for i, key in enumerate(keys))
    (opensearch_helpers if isinstance(es, OpenSearch) else helpers).bulk(es, actions, chunk_size=1000)
    es.indices.refresh(index=index_name())


def work(batch_id: str, job_id: str) -> int:
    es = client()
    storage = Storage(Settings.from_env())
    bucket, out_prefix, url = os.environ["BENCH_BUCKET"], os.environ["BENCH_OUT"], os.environ["BENCH_ENDPOINT"]
    session = requests.Session()
    page = es.search(index=index_name(), scroll="5m", body={"size": 10000, "query": {"bool": {"filter": [
        {"term": {"job_id": job_id}}, {"term": {"batch_id": batch_id}}, {"term": {"status": "NOT_STARTED"}}]}}})
    hits, scroll_id, done = page["hits"]["hits"], page.get("_scroll_id"), 0
    while hits:
        for hit in hits:
            key = hit["_source"]["file_key"]
            text = storage.read(bucket, key).decode()
            answer = session.post(url + "/invocations", data=json.dumps({"text": text}),
                                  headers={"Content-Type": "application/json"}, timeout=60)
            answer.raise_for_status()
            storage.write(bucket, f"{out_prefix}/{key}.json", answer.content, "application/json")
            es.update(index=index_name(), id=hit["_id"], body={"doc": {"status": "COMPLETED", "output": answer.json()}})
            done += 1
        if not scroll_id:
            break
        page = es.scroll(body={"scroll_id": scroll_id, "scroll": "5m"})
        hits, scroll_id = page["hits"]["hits"], page.get("_scroll_id")
    return done


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(int(sys.argv[2]), sys.stdin.read().split("\n")[:-1], sys.argv[3])
    else:
        print(work(sys.argv[2], sys.argv[3]))
