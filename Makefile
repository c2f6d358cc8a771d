# The quick start: `make run` and `make test` each set up .venv on their own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install: compiles decnet/bus/_fastmatch in place, or fails saying why.
# Only when what it builds from changed since the last one (the stamp): the
# packaging files and the Cython sources. The .py sources need no install: an
# editable install runs them from the tree.
INSTALLED := $(VENV)/.installed
$(INSTALLED): $(BIN)/python pyproject.toml setup.py $(wildcard decnet/bus/*.pyx decnet/bus/*.pxi)
	$(BIN)/pip install -q -e .
	touch $@

# Then runs the broker in the foreground on the default socket (Ctrl-C stops it).
run: $(INSTALLED)
	$(BIN)/decnet info
	$(BIN)/decnet bus --loop uvloop

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	@test -x /usr/bin/chromium || echo "note: /usr/bin/chromium is missing, so the live page's browser test" \
		"is skipped (apt-get install -y chromium runs it)"
	@command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || \
		echo "note: nats-server is not installed: the bridge's end-to-end tests are skipped (apt-get install nats-server)"
	$(BIN)/pytest

bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pytest bench --benchmark-only --benchmark-columns=min,median,mean,ops,rounds --benchmark-sort=name

clean:
	rm -rf $(VENV) build *.egg-info decnet/bus/_fastmatch.c decnet/bus/*.so .pytest_cache .benchmarks .hypothesis

# Fan-out comparison against NATS, Redis and ZeroMQ (bash bench/peers.sh installs them;
# without them only the decnet variants run). E.g. make fanout FANOUT_ARGS=--quick
.PHONY: fanout
fanout: $(BIN)/python
	$(BIN)/python bench/fanout.py $(FANOUT_ARGS)

# Differential fuzzing of the frame decoder, compiled against its pure twin (atheris,
# fuzz/fuzz_decoder.py says what it checks): FUZZ_SECONDS of libFuzzer. The corpus
# grows in build/fuzz-corpus across runs; a failing input is saved as build/fuzz-crash-*
# and the run exits non-zero. E.g. make fuzz FUZZ_SECONDS=3600
FUZZ_SECONDS ?= 600
.PHONY: fuzz
fuzz: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	mkdir -p build
	$(BIN)/python fuzz/fuzz_decoder.py build/fuzz-corpus -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
		-artifact_prefix=build/fuzz- -print_final_stats=1

# The long versions of the reliability tests (docs/RELIABILITY.md): the same tests CI
# runs short, with DECNET_BUS_STRESS=long (1 GiB slow consumer, 100 waves of kill -9,
# 100,000 connection cycles per way, a minute of 200 clients, 10,000 fuzz examples,
# 1,000 event-stream connect/disconnect cycles on decnet web).
.PHONY: stress
stress: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	DECNET_BUS_STRESS=long $(BIN)/pytest -s -p no:cacheprovider tests/test_slow_consumer.py \
		tests/test_faults.py tests/test_load.py tests/test_fuzz_broker.py tests/test_fuzz_decoder.py \
		tests/test_web_e2e.py tests/test_bridge.py
