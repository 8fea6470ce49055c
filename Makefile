# Two entry points for a fresh machine:
#   make study STUDY=model_size   installs the base, then runs the study offline on local models
#   make test                     installs the base, every extra, Chromium and Slurm, then runs the test suite
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STUDY ?= model_size
ARGS ?=
# pytest-xdist workers for `make test` (one per core here; a test file stays on one worker so its
# module fixtures are built once). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
LLAMA_VERSION := 0.3.36
# llama.cpp's default native build segfaults on these CPUs (AMX); this portable build works.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_BF16=OFF
# Kept outside the checkout so fresh clones on the same machine (CI) reuse the build.
WHEEL_DIR ?= $(HOME)/.cache/llm-study-engine/wheels
LLAMA_WHEEL_STAMP := $(WHEEL_DIR)/.llama-$(LLAMA_VERSION)
export LITELLM_LOCAL_MODEL_COST_MAP := True

.PHONY: install install-all install-ray install-slurm install-inspect install-test browser slurm study plan summary watch \
	report regrade snapshot snapshot-deps test test-fast bench lock clean docs

# One section of requirements.lock ([base], [ray], ...), as a requirements file.
lock_section = awk '/^\# \[/ {on = ($$0 == "\# [$(1)]"); next} on' requirements.lock > $(VENV)/$(1).txt

install: $(VENV)/.installed
install-all: install-ray install-slurm install-inspect install-test
install-ray: $(VENV)/.installed-ray
install-slurm: $(VENV)/.installed-slurm
install-inspect: $(VENV)/.installed-inspect
install-test: $(VENV)/.installed-test

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Built once from source with the flags above (about 10 minutes on 2 cores), then reused.
$(LLAMA_WHEEL_STAMP): | $(VENV)/bin/python
	mkdir -p $(WHEEL_DIR)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-binary llama-cpp-python --no-cache-dir \
		llama-cpp-python==$(LLAMA_VERSION) -w $(WHEEL_DIR)
	touch $@

# The base install: what `make study` needs (requirements.lock's [base] section).
$(VENV)/.installed: requirements.lock pyproject.toml $(LLAMA_WHEEL_STAMP)
	$(call lock_section,base)
	$(PIP) install --no-deps --find-links $(WHEEL_DIR) -r $(VENV)/base.txt
	$(PIP) install --no-deps -e .
	$(PY) -c "import llama_cpp, llama_cpp.server.app, litellm, duckdb, hydra, uvloop" >/dev/null
	# The Vega runtime every HTML report embeds (2-3 s to bundle), built now rather than by the first report.
	$(PY) -c "from engine.report.render import vega_runtime; vega_runtime()"
	touch $@

# An extra on top of the base: pip install -e ".[ray]" with the lock's exact versions.
$(VENV)/.installed-%: requirements.lock $(VENV)/.installed
	$(call lock_section,$*)
	$(PIP) install --no-deps -r $(VENV)/$*.txt
	$(PIP) check
	touch $@

# Debian's Chromium, for the transcript browser test (tests/report/test_transcript_browser.py).
# Without apt (or root) the browser test is skipped with that reason, rather than the whole suite failing.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "warning: Chromium could not be installed; tests/report/test_transcript_browser.py will be skipped"

# Debian's Slurm, its accounting daemon and their databases, for the tests that start a real single-node
# cluster in a temporary folder (tests/sweep/test_slurm.py; the daemons run as root). Without apt (or
# root) those tests are skipped with that reason.
slurm:
	command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v munged >/dev/null \
		&& command -v mariadbd >/dev/null \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			slurm-wlm slurmdbd munge mariadb-server) \
		|| echo "warning: Slurm could not be installed; tests/sweep/test_slurm.py will be skipped"

study: install
	$(PY) -m engine run $(STUDY) --calibrate $(ARGS)

plan: install
	$(PY) -m engine plan $(STUDY) $(ARGS)

summary: install
	$(PY) -m engine summary $(STUDY) $(ARGS)

# A running study, from another terminal (ARGS: the run's overrides; "--once" prints one snapshot).
watch: install
	$(PY) -m engine watch $(STUDY) $(ARGS)

# The study's own design simulated with the report's tests and intervals: false support, power, coverage
# (ARGS: overrides, --draws N, --seed S); stored in the database for the report's calibration section.
calibrate: install
	$(PY) -m engine calibrate $(STUDY) $(ARGS)

# Re-render reports/$(STUDY)/ from the database; calls no model.
report: install
	$(PY) -m engine report $(STUDY) $(ARGS)

# Two finished studies (or spec versions) side by side: B - A per cell and metric, the spec diff, and a
# report in reports/compare-<A>-vs-<B>/; calls no model. E.g. make compare A=model_size B=model_size:5193fd3f
.PHONY: compare
compare: install
	$(PY) -m engine compare $(A) $(B) $(ARGS)

# Inspect logs of the study, one .eval per model x condition (ARGS="--out DIR" to choose where); calls no model.
.PHONY: export-inspect
export-inspect: install-inspect
	$(PY) -m engine export inspect $(STUDY) $(ARGS)

# Grade the stored responses again (e.g. ARGS="judge_set=openrouter"); no model under test is called.
regrade: install
	$(PY) -m engine judge $(STUDY) $(ARGS)

# Look at the rendered report as a reader would: PNGs of the HTML (headless Chromium) and PDF pages.
snapshot-deps:
	command -v chromium >/dev/null && command -v pdftoppm >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq chromium poppler-utils)

snapshot: install-test snapshot-deps
	$(PY) reports/snapshot.py reports/$(STUDY)

# The database's documented schema (docs/schema.md), from the migrations.
docs: install
	$(PY) -m engine.store.schema_doc > docs/schema.md

test: install-all browser slurm
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# Tests that do not load a local LLM.
test-fast: install-all browser slurm
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

bench: install
	$(PY) bench/report_timing.py
	$(PY) bench/study_timing.py

# At scale: gateway throughput against a loopback server (target efficiency 0.90), 1M call rows
# through the store's commit path (60 s), a 100,000-trial plan (5 s, 1 GiB), the report's queries
# over 1M calls (2 s). Each prints its ratio to the target.
# The main job (make study STUDY=model_size) on a fresh database against its 6-minute target (2 idle cores).
.PHONY: bench-main-job
bench-main-job: install
	$(PY) bench/main_job.py $(ARGS)

.PHONY: bench-gateway bench-ingest bench-plan bench-store bench-scale
bench-gateway: install
	$(PY) bench/gateway_throughput.py
bench-ingest: install
	$(PY) bench/store_ingest.py
bench-plan: install
	$(PY) bench/plan_scale.py
bench-store: install
	$(PY) bench/store_scale.py
bench-scale: bench-gateway bench-ingest bench-plan bench-store

# The report's transcript browser on a planted 10,000-game study: HTML size (< 30 MB) and load time in
# headless Chromium (< 3 s), each printed with its ratio to the target.
.PHONY: bench-transcripts
bench-transcripts: install-test browser
	$(PY) bench/transcript_browser.py

# Regenerate the lock after changing dependencies in pyproject.toml: install the new ones into the venv
# (pip install -e ".[ray,slurm,inspect,test]"), then write every section from what is installed.
lock:
	$(PY) .ci/lock.py > requirements.lock.new && mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) results outputs
