# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run test lint bench clean chromium toolchains nftables node-sdk mono ffmpeg haproxy wrk native

# The stamp files make both targets idempotent: pip only runs again when pyproject.toml changes.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# `make run` installs what the docs use: the broker trigger clients ([brokers]) and the client tools the
# README, docs/ and examples/scenarios/ call ([tour]: boto3, the aws CLI, Pillow, pika, paho-mqtt).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[brokers,tour]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test,brokers,tour]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed nftables node-sdk mono ffmpeg native
	$(BIN)/polyfn serve --host $(HOST) --port $(PORT) --examples

# The pid namespace's native supervisor/init (src/polyfn/sandbox/pidinit.c), built with the system's C compiler;
# the server builds it itself when missing, and without a compiler keeps the Python ones (~3 MB more per instance).
native: $(VENV)/.installed
	@$(BIN)/python -m polyfn.sandbox.pidinit >/dev/null || echo "note: no C compiler: each sandboxed instance keeps two Python helper processes"

# Browser tests drive Debian's chromium through Playwright; install it when missing (root + apt only;
# otherwise those tests skip with a reason, and fail under CI=true).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } || \
	    echo "chromium could not be installed: browser tests will skip"; \
	  else echo "chromium missing and not installable here (needs root + apt-get): browser tests will skip"; fi; }

# The default network of functions (`egress`: the internet, never the host) is enforced with nftables as root;
# install it when missing. Without it (or not root) `egress` functions reach only polyfn's API, S3 and their
# --allow-net entries: `polyfn doctor` says so.
nftables:
	@command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nftables >/dev/null; } || \
	    echo "nftables could not be installed: functions' default network will reach no internet (polyfn doctor)"; \
	  else echo "note: not root or no apt-get: functions' default network reaches no internet (polyfn doctor)"; fi; }

# The AWS SDK v3 for Node.js functions, as Lambda's Node runtime provides it: one shared read-only copy that
# every Node function can require (its own package.json version wins). Installed once, from npm.
NODE_SDK := src/polyfn/runtimes/node/provided/aws-sdk
node-sdk:
	@[ -d $(NODE_SDK)/node_modules/@aws-sdk/client-apigatewaymanagementapi ] || { command -v npm >/dev/null 2>&1 && \
	  npm install --prefix $(NODE_SDK) --no-save --no-audit --no-fund --loglevel=error \
	    @aws-sdk/client-s3@3 @aws-sdk/client-lambda@3 @aws-sdk/client-dynamodb@3 @aws-sdk/lib-dynamodb@3 \
	    @aws-sdk/client-apigatewaymanagementapi@3 >/dev/null \
	  || echo "note: the AWS SDK v3 for Node functions could not be installed (npm): require('@aws-sdk/…') will fail"; }

# Toolchains the tests use beyond Python: Node.js (>= 20, preinstalled on our machines) and Go (for the
# seed's Knative reverse.go); installed only when missing.
toolchains:
	@command -v go >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q golang-go >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q golang-go >/dev/null; }; } \
	  || echo "note: no Go toolchain (apt-get install golang-go): the Knative Go tests will skip"; }

# Mono for C# Azure functions (the dotnet runtime, src/polyfn/runtimes/dotnet: APT_PACKAGES there).
mono:
	@{ command -v mono && command -v mcs && ls /usr/lib/cli/Newtonsoft.Json*/Newtonsoft.Json.dll; } >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-mcs mono-runtime libnewtonsoft-json-cil-dev >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q mono-mcs mono-runtime libnewtonsoft-json-cil-dev >/dev/null; }; } \
	  || echo "note: no Mono (apt-get install mono-mcs mono-runtime libnewtonsoft-json-cil-dev): C# functions cannot deploy and their tests will skip"; }

# ffmpeg for the seed's video scenario (examples/scenarios/video-transcode: the function runs it as a child
# process, as the seed's Function Compute sample does); installed only when missing.
ffmpeg:
	@command -v ffmpeg >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ffmpeg >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ffmpeg >/dev/null; }; } \
	  || echo "note: no ffmpeg (apt-get install ffmpeg): the video scenario cannot transcode and its test will skip"; }

# HAProxy in front of a test cluster (tests/ship/test_cluster_lb.py, bench/cluster.py); installed only when missing.
haproxy:
	@{ command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends haproxy >/dev/null; }; } \
	  || echo "note: no HAProxy (apt-get install haproxy): the load-balanced cluster test will skip"; }

test: $(VENV)/.installed-test chromium toolchains nftables node-sdk mono ffmpeg haproxy native
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -n 2 -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench

# wrk drives most HTTP benches (bench/_common.py); installed only when missing.
wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null; }; } \
	  || echo "note: no wrk (apt-get install wrk): the HTTP benches cannot run"; }

bench: $(VENV)/.installed-test wrk
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/coldstart.py
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/storage.py

clean:
	rm -rf $(VENV) build src/*.egg-info
