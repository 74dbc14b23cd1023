# The front door: make run | test | fuzz | bench | gen | check-gen | lint | clean.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
# buf from the npm registry (@bufbuild/buf ships the binary in a per-platform npm package), kept in .venv.
BUF_VERSION := 1.75.0
BUF := $(VENV)/npm/node_modules/.bin/buf
BUF_STAMP := $(VENV)/npm/.installed-buf-$(BUF_VERSION)
BUF_IMAGE := $(VENV)/buf/tweetmesh.binpb
# The released contract: `buf breaking` compares protos/ against it; `make api-release` replaces it.
RELEASED := protos/released.binpb

.PHONY: run test fuzz bench bench-tools bench-tools-if-root gen check-gen lint buf api-release unit clean venv

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

## run: the whole mesh on this machine (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set).
run: $(STAMP)
	$(PY) -m devstack

## gen: regenerate gen/ (Python code, typed stubs, Envoy descriptor set), docs/openapi.yaml and
## deploy/k8s/envoy-config.yaml from protos/ and envoy/envoy.yaml.
gen: $(STAMP)
	$(PY) tools/gen.py

## check-gen: fail when anything `make gen` writes differs from what protos/ and envoy/ generate.
check-gen: $(STAMP)
	@rm -rf $(VENV)/gen-check && $(PY) tools/gen.py --root $(VENV)/gen-check >/dev/null
	@diff -r -q gen $(VENV)/gen-check/gen -x __pycache__ || (echo "gen/ has drifted from protos/: run 'make gen' and commit" && exit 1)
	@for f in docs/openapi.yaml deploy/k8s/envoy-config.yaml; do \
	  diff -q $$f $(VENV)/gen-check/$$f || { echo "$$f has drifted: run 'make gen' and commit"; exit 1; }; done
	@echo "gen/, docs/openapi.yaml and deploy/k8s/envoy-config.yaml match their sources"

## lint: ruff, strict mypy, buf lint and buf breaking.
lint: $(STAMP) buf
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(BUF_STAMP):
	@command -v npm >/dev/null || (echo "npm is needed to install buf (@bufbuild/buf)" && exit 1)
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent --save-exact @bufbuild/buf@$(BUF_VERSION)
	touch $@

## buf: buf lint (STANDARD) on protos/, and buf breaking against the released contract.
buf: $(STAMP) $(BUF_STAMP)
	@$(PY) tools/gen.py --image $(BUF_IMAGE)
	$(BUF) lint '$(BUF_IMAGE)#format=binpb' --path tweetmesh --config buf.yaml
	$(BUF) breaking '$(BUF_IMAGE)#format=binpb' --against '$(RELEASED)#format=binpb' --path tweetmesh --config buf.yaml

## api-release: record protos/ as the released contract (only on purpose: later breaking changes fail lint).
api-release: $(STAMP)
	$(PY) tools/gen.py --image $(RELEASED) --no-source-info

## test: everything CI runs, against real PostgreSQL, Redis, Envoy and grpcurl.
test: check-gen lint bench-tools-if-root
	$(PY) -m pytest -p no:cacheprovider -ra tests

## fuzz: the long fuzz run: 10,000 generated HTTP requests through Envoy, 10,000 gRPC requests to
##       every service (internal RPCs too), schemathesis with 200 cases per operation and phase, and the
##       property tests with more examples (media: 3,000 damaged files).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=10000 SCHEMATHESIS_EXAMPLES=200 $(PY) -m pytest -p no:cacheprovider -ra tests/fuzz tests/unit/test_properties.py tests/unit/test_media_properties.py

BENCH_SIZE ?= small
BENCH_TOOLS := h2load:nghttp2-client wrk:wrk redis-benchmark:redis-tools

## bench: the benchmark at BENCH_SIZE=tiny|small|medium|large; writes bench/results/.
bench: $(STAMP) bench-tools
	$(PY) -m bench --size $(BENCH_SIZE)

## bench-tools: the load generators (Debian packages), installed with apt-get when missing (as root).
bench-tools:
	@$(MAKE) --no-print-directory bench-tools-if-root
	@for t in $(BENCH_TOOLS); do command -v $${t%%:*} >/dev/null || { \
	  echo "make bench needs $${t%%:*} from Debian's $${t#*:}: run as root, or apt-get install $${t#*:}"; exit 1; }; done

# The benchmark smoke test in `make test` uses them too; without root it explains and skips.
bench-tools-if-root:
	@missing=""; for t in $(BENCH_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing for the benchmark"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq$$missing >/dev/null; \
	fi

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -q tests/unit

# As root, the embedded PostgreSQL may keep its files outside .data (see devstack/postgres.py), linked
# from .data/postgres: they go too.
clean:
	@if [ -L .data/postgres ]; then rm -rf "$$(dirname "$$(readlink .data/postgres)")"; fi
	rm -rf $(VENV) .data
