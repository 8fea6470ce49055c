import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO = Path(__file__).resolve().parents[1]


def _own_cores() -> None:
    """Under pytest-xdist, each worker (and every process it starts) keeps to its own share of the cores.
    llama.cpp sizes its threads to the cores a process may use and spins while it waits: two workers
    each running a local model on every core slowed both many times over (a 20 s test took 450 s).
    Replies do not depend on the thread count."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker.startswith("gw") and count and hasattr(os, "sched_setaffinity")):
        return
    cores, index, workers = sorted(os.sched_getaffinity(0)), int(worker[2:]), int(count)
    if 1 < workers <= len(cores):
        os.sched_setaffinity(0, set(cores[index::workers]))


_own_cores()


@pytest.fixture
def all_cores():
    """The test's process (and what it starts) may use every core again, then its own share after: for a
    third-party program that does not finish its work on one core (inspect view in Chromium left all but
    the first row's cells empty for 30 s)."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, own)

# Analysis-only studies cannot compose without the data they analyse: a traces file, or Inspect logs
# written by inspect_ai (tests/data/make_inspect_logs.py). Paths relative to the repository.
ANALYSIS_ONLY_ARGS = {
    "provider_vs_size_import": ["scenario.traces_file.path=tests/data/traces_small.csv"],
    "provider_vs_size_inspect": ["scenario.inspect_logs.path=tests/data/inspect_logs",
                                 "scenario.inspect_logs.label.score=refusal_grader",
                                 "scenario.inspect_logs.label.values={C: COMPLIANCE, I: REFUSAL}",
                                 "scenario.inspect_logs.provider=provider",
                                 "scenario.inspect_logs.params_total_b=params_total_b"],
}


def analysis_only_args(study: str, root: Path | None = None) -> list[str]:
    """The overrides `study` needs to compose (none for a study that runs models); paths under `root`
    when given (absolute), else relative to the repository."""
    args = ANALYSIS_ONLY_ARGS.get(study, [])
    if root is None:
        return list(args)
    return [re.sub(r"\.path=(.*)$", lambda m: f".path={root / m[1]}", a) for a in args]


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m engine ...` in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def run_main(capsys, monkeypatch):
    """`engine.cli.main(args)` in this process, from the repository folder like `run_cli`: no fresh interpreter
    (~5 s of imports saved per call). Returns a CompletedProcess with the exit code and the captured output.
    For tests where the process boundary is not what is checked; environment changes (`env`, `--config-dir`'s
    ENGINE_CONFIG_PATH) are undone after the test."""
    from engine.cli import main
    from engine.spec.load import CONFIG_PATH_ENV

    monkeypatch.chdir(REPO)
    monkeypatch.setenv(CONFIG_PATH_ENV, os.environ.get(CONFIG_PATH_ENV, ""))  # restored (or unset) afterwards
    if not os.environ[CONFIG_PATH_ENV]:
        monkeypatch.delenv(CONFIG_PATH_ENV)

    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        for key, value in (env or {}).items():
            monkeypatch.setenv(key, value)
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(["python", "-m", "engine", *args], code, out.out, out.err)

    return run


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "study.duckdb"


@pytest.fixture
def plugin_registry():
    """The plug-in registry, scoped to the test: what the test registers (or installs and discovers)
    is gone when it ends (engine/kernel/registry.py Registry.scoped)."""
    from engine.kernel.registry import REGISTRY

    with REGISTRY.scoped() as registry:
        yield registry


def rows(db: Path | str, sql: str) -> list[tuple]:
    """The rows a query returns from a study database, opened read-only and closed again."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs) for the tests of a module, started as the executor starts one
    (engine.execute.ray_backend.connect): a run in the module joins it and leaves it running, so the
    module pays Ray's start (~10 s) and its workers' imports once. Shut down when the module ends."""
    import ray

    from engine.execute.ray_backend import connect
    from engine.spec.schema import Executor

    connect(Executor(ray={"num_cpus": 2}))
    try:
        yield
    finally:
        ray.shutdown()
