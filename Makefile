# bpfstore: `make install` once (or let any target do it), then `make test` / `make demo`.
# Extra arguments for demo and bench: make demo ARGS="--scale 0.5"; make bench ARGS="--scale 0.1"

PY := .venv/bin/python
ARGS ?=

# The install is redone when its inputs change: pyproject.toml, the install script, or the set of
# files in the package folders (strict editable mode links files one by one, so a new module is
# invisible until the editable install runs again).
STAMP := .venv/.bpfstore-installed
FILE_LIST := .venv/.bpfstore-files
PKG_DIRS := connector node_agent proto bpf
PKG_FILES := $(shell find $(PKG_DIRS) pyspark_bpfstore.py -type f -not -path '*/__pycache__/*' 2>/dev/null | sort | cksum)

.PHONY: install test test-tpch demo bench bench-tpch bench-dask-tasks bench-compression bench-cluster profile lint proto clean FORCE

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install.sh $(FILE_LIST)
	scripts/install.sh
	@touch $@

# Rewritten only when the listing changed, so its mtime moves only then.
$(FILE_LIST): FORCE
	@mkdir -p $(@D)
	@echo '$(PKG_FILES)' | cmp -s - $@ || echo '$(PKG_FILES)' > $@

test: install
	$(PY) -m pytest tests -q

# The TPC-H suite alone at another scale (make test runs it at SF 0.01):
# make test-tpch SF=1 [REPORT=tpch.jsonl] (then: .venv/bin/python tests/tpch/summary.py tpch.jsonl)
SF ?= 0.1
REPORT ?=
test-tpch: install
	TPCH_SF=$(SF) TPCH_REPORT=$(REPORT) $(PY) -m pytest -q --timeout=3600 \
		tests/integration/test_tpch_sql.py tests/e2e/test_tpch_dask.py tests/e2e/test_tpch_spark.py

demo: install
	$(PY) -m bpfstore.connector.demo $(ARGS)

bench: install
	$(PY) bench/bench_core.py $(ARGS)
	$(PY) bench/bench_first_query.py $(ARGS)
	$(PY) bench/bench_cores.py $(ARGS)
	$(PY) bench/bench_dask.py $(ARGS)
	$(PY) bench/bench_spark.py $(ARGS)

# TPC-H's 22 queries through Spark and Dask, bpfstore vs local Parquet (docs/benchmarks/):
# make bench-tpch ARGS="--sf 1 --runs 3 [--frontends dask --queries q17,q20]"
bench-tpch: install
	$(PY) bench/bench_tpch.py $(ARGS)

# Dask task layouts (partitions_per_task) vs dd.read_parquet: make bench-dask-tasks ARGS="--sf 1"
bench-dask-tasks: install
	$(PY) bench/bench_dask_tasks.py $(ARGS)

# Scan with Arrow IPC compression none/lz4/zstd: make bench-compression ARGS="--sf 1 [--link 1gbit]"
bench-compression: install
	$(PY) bench/bench_scan_compression.py $(ARGS)

# As root (py-spy attaches to the agent): make profile ARGS="--scale 0.1 --seconds 8"
profile: install
	$(PY) bench/profile_read_path.py $(ARGS)

# As root: storage hosts as network namespaces behind rate-limited veths (docs/benchmarks/).
# make bench-cluster ARGS="--sf 10 --queries q6 --link 1gbit,10gbit"
bench-cluster: install
	$(PY) bench/bench_cluster.py $(ARGS)

lint: install
	.venv/bin/ruff check .
	.venv/bin/mypy proto/contract connector node_agent

proto: install
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
		--grpc_python_out=proto proto/bpfstore/v1/*.proto

# Keeps .venv and the cached benchmark data (.bench/); build/ holds the editable install's links,
# so removing it also removes the stamp to force a reinstall.
clean:
	rm -rf build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis $(STAMP)
	find . -path ./.venv -prune -o -name __pycache__ -type d -exec rm -rf {} +

FORCE:
