"""The light base install: Ray, the Slurm launcher and Inspect are extras. A study that needs a
missing one fails before anything is written, naming the extra (and the key that asked for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.kernel.errors import MissingExtra, SpecError
from engine.kernel.extras import EXTRAS, PACKAGES, require
from engine.kernel.paths import REPO_ROOT


def test_a_missing_extra_names_the_extra_and_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # the import fails, installed or not
    with pytest.raises(MissingExtra) as err:
        require("ray", "ray", key="executor.backend")
    assert isinstance(err.value, SpecError) and err.value.key == "executor.backend"
    assert "'ray'" in err.value.message and 'pip install -e ".[ray]"' in err.value.message
    assert "make install-ray" in err.value.message


def test_a_broken_module_inside_an_installed_extra_is_not_called_missing(monkeypatch):
    # inspect_ai is there but one of its own dependencies is not: the real error, not "install the extra".
    monkeypatch.setitem(sys.modules, "some_dependency_of_inspect", None)

    def broken(name, *args, **kwargs):
        raise ModuleNotFoundError("No module named 'some_dependency_of_inspect'", name="some_dependency_of_inspect")

    monkeypatch.setattr("importlib.import_module", broken)
    with pytest.raises(ModuleNotFoundError) as err:
        require("inspect_ai", "inspect")
    assert not isinstance(err.value, MissingExtra)


def test_every_extra_has_a_lock_section_and_a_make_target():
    lock = (REPO_ROOT / "requirements.lock").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    for extra in EXTRAS:
        assert f"# [{extra}]" in lock, extra
        assert f"install-{extra}:" in makefile, extra
        assert f"\n{extra} = [" in pyproject, extra
    assert set(PACKAGES) == set(EXTRAS)


def test_the_base_section_holds_none_of_the_extras_packages():
    lock = (REPO_ROOT / "requirements.lock").read_text()
    base = lock.split("# [base]", 1)[1].split("\n# [", 1)[0]
    names = {line.split("==")[0].strip().lower() for line in base.splitlines() if "==" in line}
    assert names, "no pinned packages in the [base] section"
    # (boto3 stays: litellm itself requires it.)
    for heavy in ("ray", "submitit", "hydra-submitit-launcher", "inspect-ai", "inspect-evals", "datasets", "s3fs",
                  "playwright"):
        assert heavy not in names, heavy
    for needed in ("litellm", "duckdb", "hydra-core", "altair", "typst", "pypandoc-binary"):
        assert needed in names, needed


def test_the_ray_executor_without_ray_is_a_spec_error_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    db, out = tmp_path / "study.duckdb", tmp_path / "report"
    code = main(["run", "model_size", "executor=ray", f"store.path={db}", f"report.output_dir={out}",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "executor.backend" in err and ".[ray]" in err
    assert not db.exists() and not out.exists()


def test_the_slurm_launcher_without_its_plugin_names_the_slurm_extra(tmp_path):
    # Hydra discovers launchers once per process, so hide the plug-in in a fresh one.
    script = ("import sys; sys.modules['hydra_plugins.hydra_submitit_launcher'] = None\n"
              "from engine.cli import main\n"
              f"sys.exit(main(['plan', 'model_size', '-m', 'hydra/launcher=slurm', 'store.path={tmp_path}/s.duckdb']))")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 2, done.stderr
    assert ".[slurm]" in done.stderr and "hydra/launcher" in done.stderr
    assert not any(Path(tmp_path).iterdir())
