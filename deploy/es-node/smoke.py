"""Smoke test for a node started by es-node.sh: python smoke.py ENGINE PORT.

ENGINE=elasticsearch needs the `elasticsearch` 8.x client, ENGINE=opensearch needs `opensearch-py`
(the elasticsearch client refuses to talk to OpenSearch). Talks to 127.0.0.1 only. Exits non-zero
when an expectation fails; prints what each call answered, error bodies included.
"""
import json
import sys

INDEX = "esnode-smoke"
MAPPING = {
    "dynamic": "strict",
    "properties": {"kind": {"type": "keyword"}, "n": {"type": "integer"}, "title": {"type": "text"}},
}


def show(label, value):
    print(f"{label}: {json.dumps(value, sort_keys=True, default=str)}")


class Api:
    """The handful of calls used below, with the two clients' differences folded in."""

    def __init__(self, engine, port):
        self.engine = engine
        if engine == "elasticsearch":
            import elasticsearch

            self.c = elasticsearch.Elasticsearch(f"http://127.0.0.1:{port}", request_timeout=30)
            self.errors = (elasticsearch.ApiError,)
        else:
            import opensearchpy

            self.c = opensearchpy.OpenSearch(hosts=[{"host": "127.0.0.1", "port": port}], timeout=30)
            self.errors = (opensearchpy.TransportError,)

    def error(self, exc):  # (status, body) of a client exception
        if self.engine == "elasticsearch":
            return exc.meta.status, exc.body
        return exc.status_code, exc.info

    def body(self, resp):
        return resp.body if hasattr(resp, "body") else resp

    def call(self, fn, **kw):  # -> (status, body); error statuses come back instead of raising
        try:
            return 200, self.body(fn(**kw))
        except self.errors as exc:
            return self.error(exc)

    def create_index(self):
        self.c.indices.delete(index=INDEX, ignore_unavailable=True)
        settings = {"number_of_shards": 1, "number_of_replicas": 0}
        if self.engine == "elasticsearch":
            return self.call(self.c.indices.create, index=INDEX, settings=settings, mappings=MAPPING)
        return self.call(self.c.indices.create, index=INDEX, body={"settings": settings, "mappings": MAPPING})

    def index(self, doc_id, doc, **cond):
        if self.engine == "elasticsearch":
            return self.call(self.c.index, index=INDEX, id=doc_id, document=doc, **cond)
        return self.call(self.c.index, index=INDEX, id=doc_id, body=doc, **cond)

    def bulk(self, ops):
        if self.engine == "elasticsearch":
            return self.call(self.c.bulk, operations=ops)
        return self.call(self.c.bulk, body=ops)

    def mget(self, ids):
        if self.engine == "elasticsearch":
            return self.call(self.c.mget, index=INDEX, ids=ids)
        return self.call(self.c.mget, index=INDEX, body={"ids": ids})

    def search(self, query):
        if self.engine == "elasticsearch":
            return self.call(self.c.search, index=INDEX, **query)
        return self.call(self.c.search, index=INDEX, body=query)

    def count(self):
        return self.body(self.c.count(index=INDEX))["count"]


def main(engine, port):
    api = Api(engine, port)
    failures = []

    def expect(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    info = api.body(api.c.info())
    show("GET /", info)

    status, body = api.create_index()
    expect(status == 200 and body.get("acknowledged"), "create index with strict mapping")

    status, body = api.index("x", {"kind": "a", "unknown": 1})
    expect(status == 400, f"strict mapping rejects an unknown field ({status})")
    show("  strict error", body)

    status, first = api.index("1", {"kind": "a", "n": 1, "title": "first"})
    expect(status == 200 and first["result"] == "created", "index doc 1")
    seq, term = first["_seq_no"], first["_primary_term"]

    print(f"  count right after indexing, before refresh: {api.count()}")

    status, body = api.index("1", {"kind": "a", "n": 2, "title": "second"}, if_seq_no=seq, if_primary_term=term)
    expect(status == 200 and body["_seq_no"] > seq, "conditional write with current if_seq_no/if_primary_term")

    status, body = api.index("1", {"kind": "a", "n": 3, "title": "stale"}, if_seq_no=seq, if_primary_term=term)
    expect(status == 409, f"conditional write with stale if_seq_no -> 409 ({status})")
    show("  409 body", body)

    ops = [
        {"create": {"_index": INDEX, "_id": "1"}}, {"kind": "a", "n": 9},                      # exists -> 409
        {"index": {"_index": INDEX, "_id": "2"}}, {"kind": "b", "n": 2, "title": "two"},
        {"create": {"_index": INDEX, "_id": "3"}}, {"kind": "b", "n": 3, "title": "three"},
        {"index": {"_index": INDEX, "_id": "1", "if_seq_no": seq, "if_primary_term": term}},  # stale -> 409
        {"kind": "a", "n": 4},
        {"index": {"_index": INDEX, "_id": "4"}}, {"kind": "c", "bogus": True},                # strict -> 400
    ]
    status, body = api.bulk(ops)
    statuses = [next(iter(item.values()))["status"] for item in body["items"]]
    expect(status == 200 and body["errors"] and statuses == [409, 201, 201, 409, 400],
           f"_bulk per-item statuses {statuses}")
    for item in body["items"]:
        (op, res), = item.items()
        if "error" in res:
            show(f"  bulk {op} {res['_id']} error", res["error"])

    status, body = api.mget(["1", "2", "3", "404"])
    found = [d["found"] for d in body["docs"]]
    expect(found == [True, True, True, False], f"_mget (realtime, before refresh) found={found}")

    status, body = api.search({"size": 0, "aggs": {"kinds": {"terms": {"field": "kind"}}}})
    print(f"  terms agg before _refresh: {body['aggregations']['kinds']['buckets']}")

    refreshed = api.body(api.c.indices.refresh(index=INDEX))
    show("_refresh", refreshed)
    status, body = api.search({"size": 0, "aggs": {"kinds": {"terms": {"field": "kind"}}}})
    buckets = {b["key"]: b["doc_count"] for b in body["aggregations"]["kinds"]["buckets"]}
    expect(buckets == {"a": 1, "b": 2}, f"terms aggregation after _refresh {buckets}")
    expect(api.count() == 3, "count after _refresh == 3")

    api.c.indices.delete(index=INDEX)
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("elasticsearch", "opensearch"):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
