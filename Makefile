# Vitals: `make demo` and `make test` are the two set-up commands (README.md).
# Both start the local stack first (Kafka, ClickHouse, PostgreSQL; deploy/stack.sh),
# installing whatever is missing.

SHELL   := bash
GO      ?= go
FUZZTIME ?= 5s
BIN     := bin/vitals
LAB     := bin/vitals-lab
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -ldflags "-X github.com/vitalshq/vitals/internal/cmdline.Version=$(VERSION)"
# The app's connection settings for the local stack (ports from deploy/stack.sh).
STACK_ENV = eval "$$(bash deploy/stack.sh env)"

.PHONY: up up-secure up-cluster down status build lab demo test check-compose chromium chdb

# Local stack without Docker (Kafka, ClickHouse, PostgreSQL); see deploy/stack.sh.
up:
	@bash deploy/stack.sh up

# The stack with its secure listeners too (Kafka SASL_SSL, ClickHouse TLS, PostgreSQL
# TLS; certificates by deploy/tls.sh), which TestSecurePipeline uses; the plain ones
# stay, and `bash deploy/stack.sh up --plain` removes the secure ones.
up-secure:
	@bash deploy/stack.sh up --secure

# The cluster stack instead (deploy/cluster.sh): PostgreSQL, ZooKeeper, three
# Kafka KRaft nodes, ClickHouse as 2 shards x 2 replicas. The app's settings
# for it: eval "$$(bash deploy/stack.sh env --cluster)" (docs/operations.md).
up-cluster:
	@bash deploy/stack.sh up --cluster

# Stops the local stack and, if it runs, the cluster stack.
down:
	@bash deploy/stack.sh down

# The stack's state; a stopped stack is a state too (stack.sh exits 3 for
# it), not an error.
status:
	@rc=0; bash deploy/stack.sh status || rc=$$?; \
		if [ $$rc -eq 3 ]; then echo "the stack is not (fully) running: make up starts it"; elif [ $$rc -ne 0 ]; then exit $$rc; fi

# The product binary: the roles and the operator's commands.
build:
	$(GO) build $(LDFLAGS) -o $(BIN) ./cmd/vitals

# The lab binary (benchmarks, simulator, fault injection; docs/lab.md) and
# the product binary whose roles it runs as child processes.
lab: build
	$(GO) build $(LDFLAGS) -o $(LAB) ./cmd/vitals-lab

# Runs every role in one process, posts the bundled Fitbit sample through the
# ingest API and prints per-user heart-rate percentiles read back from the
# query API, checked against the same figures computed from the sample.
# make demo DEMO_FLAGS=--demo-serve keeps the pipeline running afterwards and
# prints the dashboard's address with a token.
demo: up build
	@$(STACK_ENV) && ./$(BIN) demo $(DEMO_FLAGS)

# Headless Chromium (Debian's chromium package) for the dashboard's browser
# tests; installed if missing.
chromium:
	@p=$$(bash deploy/install-chromium.sh) && echo "== chromium for the browser tests: $$p"

# A current ClickHouse engine beside the stack's 18.16: chDB (ClickHouse 26.9,
# from PyPI, in a virtual environment under .stack/chdb, installed once) behind
# deploy/chdb/bridge.py on 127.0.0.1:18124 (VITALS_CHDB_PORT). make test runs
# the ClickHouse check on it (docs/clickhouse.md).
chdb:
	@bash deploy/stack.sh up chdb

# Static checks, unit tests and the integration tests against the real stack
# (the dashboard's browser tests included), on the stack with its secure
# listeners too (TestSecurePipeline), and the ClickHouse check: every
# statement the project sends, on 18.16 and on 26.9, answers compared
# (TestClickHouseCheck; its figures are printed after the tests). The
# integration tests run after the unit tests, not beside them: their outage
# tests stop the stack's PostgreSQL and ClickHouse, which some unit tests
# use (a unit test once failed with PostgreSQL stopped under it). The
# integration tests take minutes: each prints a line as it finishes
# (internal/testprogress), and a failure prints its whole output.
CHECK_REPORT := .stack/clickhouse-check.txt
test: up-secure chromium chdb
	@echo "== gofmt"; out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	@echo "== go mod tidy"; $(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }
	@echo "== go vet"; $(GO) vet ./...
	@echo "== docker-compose.yml"; bash deploy/check-compose.sh
	@echo "== go test -race (unit and integration, the ClickHouse check on 18.16 and 26.9; the binaries the tests start run with the race detector too)"; \
		mkdir -p .stack && rm -f $(CHECK_REPORT) && $(GO) build -o bin/testprogress ./internal/testprogress && \
		$(STACK_ENV) && set -o pipefail && export VITALS_CLICKHOUSE_CHECK_REPORT=$(CURDIR)/$(CHECK_REPORT) && \
		{ $(GO) test -race -count=1 -timeout 10m -json $$($(GO) list ./... | grep -v /internal/integration$$); unit=$$?; \
		  $(GO) test -race -count=1 -timeout 25m -json ./internal/integration/; exit $$((unit | $$?)); } | bin/testprogress
	@echo "== ClickHouse check (TestClickHouseCheck)"; cat $(CHECK_REPORT)
	@echo "== fuzz (briefly; seed corpora in each package's testdata/fuzz)"; for t in \
		ingest:FuzzReadingsJSON ingest:FuzzReadingsAvro ingest:FuzzDecodeFHIR ingest:FuzzJSONFastPath schemas:FuzzAvroFastDecode \
		schemas:FuzzAcceptedDecoder schemas:FuzzAppendReading processor/rules:FuzzSnapshot; do \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/ || exit 1; done

check-compose:
	@bash deploy/check-compose.sh

# The single-role benchmarks, one vitals-lab bench subcommand each:
#
# bench-ingest: load-tests ingest on loopback: starts only the ingest role in-process (its
# own topics, vitals-bench.*, deleted afterwards), posts pre-encoded 500-reading
# batches of the Fitbit sample from 8 keep-alive clients for 3 s + 20 s and
# prints accepted readings/s and latency percentiles. Flags and VITALS_BENCH_*
# variables tune it, e.g. VITALS_BENCH_CLIENTS=16 make bench-ingest or
# make bench-ingest BENCH_FLAGS="--bench-clients 4 --bench-json out.json".
#
# bench-processor: end-to-end processor benchmark on the local stack: fills topics of its own
# (bench-proc-<time>.*) with 100,000 users' pairings and 2,000,000 heart-rate
# readings, runs one processor in-process with a fresh group until the
# offsets stored in PostgreSQL reach the log ends, and prints events/s,
# PostgreSQL commit time per batch and CPU. Topics and state rows are deleted
# afterwards. E.g. make bench-processor BENCH_FLAGS="--processor-batch 50000"
# or BENCH_FLAGS="--bench-users 10000 --bench-events 500000 --bench-cpuprofile cpu.out".
#
# bench-projector: end-to-end projector benchmark on the local stack: fills a topic of its own
# (bench-proj-<time>.readings.accepted.v1) with 2,000,000 accepted heart-rate
# readings of 10,000 users, then projects them into a fresh ClickHouse
# database with one in-process projector (batch 50,000 rows / 1 s) until every
# offset is committed, reports rows/s and checks raw and rollup counts equal
# the input. Topics, database and group are deleted afterwards. E.g.
# make bench-projector BENCH_FLAGS="--bench-rows 500000 --projector-batch-rows 100000".
#
# bench-replay: replay benchmark: fills a topic of its own (bench-replay-<time>.*) with
# 10,000,000 accepted heart-rate readings, then runs vitals replay rebuild of
# the readings table and its rollup into a fresh database (verify and swap
# included, timed apart) and reports events/s from Kafka into ClickHouse.
# Topics, databases and groups are deleted afterwards. E.g.
# make bench-replay BENCH_FLAGS="--bench-rows 2000000 --replay-batch-rows 100000".
#
# bench-query: query latency benchmark: generates 100,000,000 heart-rate readings of
# 100,000 users (with profiles and devices) inside ClickHouse in a database of
# its own (vitals_bench_query; INSERT ... SELECT from numbers(), a few minutes,
# with progress), merges it, starts the query service in-process and reports
# p50/p95 over HTTP for single-user percentiles, cohort distributions,
# comparisons and the cohort table; then loads an equal 10,000,000-row subset
# into PostgreSQL and compares the seeds' percentile_cont cohort statistics.
# Everything is dropped afterwards unless BENCH_FLAGS has --bench-keep (a
# later run of the same size reuses kept data). Smaller: BENCH_FLAGS="--bench-rows 10000000".
BENCH_ROLES := ingest processor projector replay query
.PHONY: $(addprefix bench-,$(BENCH_ROLES))
$(addprefix bench-,$(BENCH_ROLES)): bench-%: up lab
	@$(STACK_ENV) && ./$(LAB) bench $* $(BENCH_FLAGS)

# End-to-end benchmark on the local stack (vitals-lab bench e2e, three runs):
# ingest, processor and projector as separate processes of bin/vitals (their
# CPU and peak memory read from /proc), the fleet simulator posting 100,000
# readings/s for 15 s (throughput until every reading is queryable), then
# 50,000/s for 20 s (freshness: ingest's answer to the row visible in
# ClickHouse), then the projector against ClickHouse's Kafka engine on the
# same accepted readings (a JSONEachRow copy, which 18.16's engine can read).
# Each run appends a JSON line to bench/out/e2e.jsonl (git-ignored; copy a
# run worth publishing to bench/results/e2e.jsonl); medians at the end.
# E.g. make bench BENCH_FLAGS="--bench-runs 1 --bench-rate 50000".
.PHONY: bench
bench: up lab
	@$(STACK_ENV) && ./$(LAB) bench e2e $(BENCH_FLAGS)

# The same end-to-end benchmark on the single-node stack and then on the
# cluster stack (make up-cluster: three brokers, ClickHouse 2 shards x 2
# replicas), printed side by side (vitals-lab bench e2e --bench-cluster).
# On one 2-core machine it records what replication and sharding cost, not
# a speed-up. E.g. make bench-cluster BENCH_FLAGS="--bench-runs 1".
.PHONY: bench-cluster
bench-cluster: up up-cluster lab
	@$(STACK_ENV) && ./$(LAB) bench e2e --bench-cluster $(BENCH_FLAGS)

# Fault injection (vitals-lab chaos): a pipeline of child processes while the
# simulator streams with injected data faults; 12 kill -9 of processor,
# projector and ingest, a broker restart, ClickHouse stopped 60 s,
# PostgreSQL stopped 30 s, a second processor joining and leaving; then the
# manifest is verified against ClickHouse and the dead-letter topic. About
# 10 minutes. The short version runs in make test (TestChaosShort). The
# report is appended to bench/out/chaos.txt (git-ignored), the roles' logs
# and the manifest go to bench/out/logs/.
# E.g. make chaos CHAOS_FLAGS="--chaos-kills 20 --simulate-duration 10m".
.PHONY: chaos
chaos: up lab
	@mkdir -p bench/out/logs && $(STACK_ENV) && set -o pipefail && \
		./$(LAB) chaos --simulate-manifest bench/out/logs/chaos-manifest.jsonl $(CHAOS_FLAGS) | tee -a bench/out/chaos.txt
