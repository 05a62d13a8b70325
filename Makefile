# Two entry points for a fresh machine: `make demo` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install lint kafka-up kafka-down bench clean faults-nightly

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/memstream models build --lm
	touch $(STAMP)

install: $(STAMP)

kafka-up: $(STAMP)
	$(BIN)/memstream kafka up

kafka-down: $(STAMP)
	$(BIN)/memstream kafka down

# House tooling: ruff (lint + format) over the repository, mypy strict on memstream.models and memstream.streams.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	.ci/typecheck

demo: $(STAMP)
	$(BIN)/memstream demo

# pytest's exit code 5 (no tests collected) is a failure here, not a pass.
test: kafka-up
	$(BIN)/python -m pytest -q tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest ran no tests" >&2; exit 1; fi; exit $$rc

# The fault suite at nightly size: 10,000 events, three seeds; prints lost / identical / divergent per seed.
faults-nightly: kafka-up
	bash .ci/faults-nightly

clean:
	rm -rf $(VENV) var .pytest_cache
