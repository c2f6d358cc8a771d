# The quick start: `make run` and `make test` each set up .venv on their own.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Editable install: compiles decnet/bus/_fastmatch in place, or fails saying why.
# Then runs the broker in the foreground on the default socket (Ctrl-C stops it).
run: $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/decnet info
	$(BIN)/decnet bus --loop uvloop

test: $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
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
