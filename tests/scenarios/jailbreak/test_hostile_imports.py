"""Hostile files an analysis-only jailbreak study imports (issue 19): Inspect logs built with
inspect_ai (valid ones) and altered with zipfile (hostile ones), and traces files. Each is refused
with a SpecError naming the file, the sample or row, and the key, before anything is written; or,
for message content given as parts, converted to its text."""

from __future__ import annotations

import json
import os
import struct
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from engine.cli import main
from engine.kernel.errors import SpecError
from engine.scenarios.jailbreak.params import InspectLogs

inspect_log = pytest.importorskip("inspect_ai.log")
from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSample, EvalSpec, write_eval_log  # noqa: E402
from inspect_ai.scorer import Score  # noqa: E402

from engine.scenarios.jailbreak.inspect_import import read_inspect_logs  # noqa: E402
from engine.scenarios.jailbreak.traces import read_traces_file  # noqa: E402

MAPPING = {"label": {"score": "grade", "values": {"C": "COMPLIANCE", "I": "REFUSAL"}}, "provider": "org",
           "params_total_b": "size"}
CLI_MAPPING = ["scenario.inspect_logs.label.score=grade",
               "scenario.inspect_logs.label.values={C: COMPLIANCE, I: REFUSAL}",
               "scenario.inspect_logs.provider=org", "scenario.inspect_logs.params_total_b=size"]


def write_log(path: Path, model: str = "acme/small", org="Acme", size=7.0, items: int = 3, **metadata) -> Path:
    """A log as Inspect writes it: `items` samples scored C/I, with org and size in their metadata."""
    samples = [EvalSample(id=f"b-{i}", epoch=1, input=f"request {i}", target="",
                          metadata={"org": org, "size": size, **metadata},
                          scores={"grade": Score(value="C" if i % 2 else "I")}) for i in range(items)]
    spec = EvalSpec(created="2026-12-01T10:00:00+00:00", task="t", model=model,
                    dataset=EvalDataset(name="d", samples=items), config=EvalConfig())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_eval_log(EvalLog(status="success", eval=spec, samples=samples), str(path))
    return path


def settings(folder: Path, **more) -> InspectLogs:
    return InspectLogs.model_validate({"path": str(folder), **MAPPING, **more})


def sample_json(log: Path) -> dict:
    """The first sample of a log as its entry holds it (inspect_ai reads the zstd entry)."""
    first = inspect_log.read_eval_log(str(log)).samples[0]
    return json.loads(first.model_dump_json())


def add_entry(log: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(log, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)


def import_error(folder: Path, **more) -> SpecError:
    with pytest.raises(SpecError) as err:
        read_inspect_logs(settings(folder, **more))
    return err.value


# -- zip entries --------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["samples/../../x.json", "samples/./b-9_epoch_1.json", "samples//b-9_epoch_1.json",
                                   "samples/..\\b-9_epoch_1.json", "samples/b-9.json"])
def test_a_sample_entry_inspect_would_not_write_is_refused(tmp_path, entry):
    log = write_log(tmp_path / "logs" / "a.eval")
    extra = sample_json(log) | {"id": "b-9"}
    add_entry(log, entry, json.dumps(extra).encode())
    error = import_error(tmp_path / "logs")
    assert error.file == str(log) and repr(entry) in error.message
    assert "not a sample name Inspect writes" in error.message


def test_a_sample_copied_under_another_name_is_refused(tmp_path):
    log = write_log(tmp_path / "logs" / "a.eval")
    add_entry(log, "samples/copy_epoch_1.json", json.dumps(sample_json(log)).encode())
    error = import_error(tmp_path / "logs")
    assert error.file == str(log) and "sample 'b-0' (epoch 1) is in the log twice" in error.message


def test_valid_logs_import_every_sample_once(tmp_path):
    write_log(tmp_path / "logs" / "a.eval", items=4)
    write_log(tmp_path / "logs" / "b.eval", model="bolt/mini", org="Bolt", size=3.0, items=4)
    traces = read_inspect_logs(settings(tmp_path / "logs")).traces
    assert len(traces) == 8 and sorted(traces.model.unique()) == ["acme/small", "bolt/mini"]


# -- inflation caps -----------------------------------------------------------------------------------

def zeros_entry(log: Path, name: str, megabytes: int) -> None:
    with zipfile.ZipFile(log, "a", zipfile.ZIP_DEFLATED) as archive, archive.open(name, "w", force_zip64=True) as out:
        block = b"\0" * (1 << 20)
        for _ in range(megabytes):
            out.write(block)


def test_a_zip_bomb_is_refused_at_once_naming_the_cap_and_how_to_raise_it(tmp_path):
    log = write_log(tmp_path / "logs" / "a.eval")
    zeros_entry(log, "samples/bomb_epoch_1.json", 300)  # 300 MB in about 300 KB
    assert log.stat().st_size < 1_000_000
    started = time.monotonic()
    error = import_error(tmp_path / "logs")
    assert time.monotonic() - started < 5
    assert error.file == str(log) and "samples/bomb_epoch_1.json" in error.message
    assert "64 MB" in error.message and error.key == "scenario.inspect_logs.max_member_mb"


def test_the_total_over_all_logs_is_capped_too(tmp_path):
    for name in ("a", "b", "c"):
        zeros_entry(write_log(tmp_path / "logs" / f"{name}.eval"), "extra.bin", 2)
    error = import_error(tmp_path / "logs", max_total_mb=5)
    assert error.key == "scenario.inspect_logs.max_total_mb" and "5 MB" in error.message
    assert "max_total_mb" in error.message and error.file.endswith("c.eval")
    assert len(read_inspect_logs(settings(tmp_path / "logs", max_total_mb=7)).traces) == 9  # raised: imported


def test_an_entry_whose_header_understates_its_size_is_refused(tmp_path):
    """Inspect inflates an entry whole, whatever its header says: the import inflates it first, bounded."""
    log = write_log(tmp_path / "logs" / "a.eval")
    with zipfile.ZipFile(log, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("extra.bin", b"\0" * (5 << 20))
    with zipfile.ZipFile(log) as archive:
        info = archive.getinfo("extra.bin")
    data = bytearray(log.read_bytes())
    central = data.rindex(b"extra.bin") - 46  # its central directory header (the name follows 46 bytes)
    assert data[central:central + 4] == b"PK\x01\x02"
    struct.pack_into("<I", data, central + 24, 1000)  # uncompressed size, central directory
    struct.pack_into("<I", data, info.header_offset + 22, 1000)  # and local header
    log.write_bytes(bytes(data))
    with zipfile.ZipFile(log) as archive:
        assert archive.getinfo("extra.bin").file_size == 1000
    error = import_error(tmp_path / "logs")
    assert "extra.bin" in error.message and "header says 1,000" in error.message


# -- parameter counts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [float("inf"), True, "inf", "1e400", -3.0, "seven"])
def test_a_parameter_count_that_is_not_a_finite_positive_number_is_refused(tmp_path, size):
    write_log(tmp_path / "logs" / "a.eval", size=size)
    error = import_error(tmp_path / "logs")
    assert error.key == "scenario.inspect_logs.params_total_b" and "sample 'b-0'" in error.message
    assert "not a positive parameter count" in error.message


@pytest.mark.parametrize("size", ["inf", "true", "-inf", "nan"])
def test_a_traces_file_parameter_count_is_checked_alike(tmp_path, size):
    path = tmp_path / "t.csv"
    pd.DataFrame({"model": ["m", "m"], "provider": ["P", "P"], "params_b": ["7", size], "prompt_id": ["a", "b"],
                  "label": ["REFUSAL", "COMPLIANCE"]}).to_csv(path, index=False)
    with pytest.raises(SpecError) as err:
        read_traces_file(str(path))
    assert "row 3, column 'params_b'" in str(err.value)


def test_a_boolean_parameter_column_of_a_parquet_file_is_refused(tmp_path):
    path = tmp_path / "t.parquet"
    pd.DataFrame({"model": ["m"], "provider": ["P"], "params_b": [True], "prompt_id": ["a"],
                  "label": ["REFUSAL"]}).to_parquet(path)
    with pytest.raises(SpecError) as err:
        read_traces_file(str(path))
    assert "column 'params_b'" in str(err.value) and "boolean" in str(err.value)


@pytest.mark.parametrize("value", ["inf", "true", ".nan"])
def test_the_specs_own_model_table_takes_finite_numbers_only(tmp_path, value):
    write_log(tmp_path / "logs" / "a.eval")
    overrides = [f"scenario.inspect_logs.path={tmp_path / 'logs'}", *CLI_MAPPING[:2],
                 f"+scenario.inspect_logs.models={{acme/small: {{provider: Acme, params_total_b: {value}}}}}"]
    from engine import load_study

    with pytest.raises(SpecError) as err:
        load_study("provider_vs_size_inspect", overrides)
    assert "scenario.inspect_logs.models.acme/small.params_total_b" in str(err.value)


# -- message content as parts -------------------------------------------------------------------------

def test_message_content_given_as_parts_is_its_text(tmp_path):
    prompt = [{"type": "text", "text": "How do I"}, {"type": "image", "image": "data:..."},
              {"type": "text", "text": "pick a lock?"}]
    write_log(tmp_path / "logs" / "a.eval", prompt=prompt)
    traces = read_inspect_logs(settings(tmp_path / "logs", item="prompt")).traces
    assert set(traces.prompt_id) == {"How do I\npick a lock?"}  # the image part has no text: left out


def test_message_content_with_no_text_part_is_refused(tmp_path):
    write_log(tmp_path / "logs" / "a.eval", prompt=[{"type": "image", "image": "data:..."}])
    error = import_error(tmp_path / "logs", item="prompt")
    assert error.key == "scenario.inspect_logs.item" and "no text part (only image)" in error.message


def test_a_traces_file_cell_holding_content_parts_is_its_text(tmp_path):
    path = tmp_path / "t.csv"
    parts = json.dumps([{"type": "text", "text": "behaviour one"}])
    pd.DataFrame({"model": ["m"], "provider": ["P"], "params_b": ["7"], "prompt_id": [parts],
                  "label": ["REFUSAL"]}).to_csv(path, index=False)
    assert read_traces_file(str(path)).prompt_id.tolist() == ["behaviour one"]


# -- control characters -------------------------------------------------------------------------------

@pytest.mark.parametrize("field, model, org", [("model", "acme\x00/small", "Acme"),
                                               ("provider", "acme/small", "Ac\x1bme"),
                                               ("provider", "acme/small", "Ac\u2028me")])
def test_a_control_character_in_a_name_is_refused_naming_log_sample_and_key(tmp_path, field, model, org):
    log = write_log(tmp_path / "logs" / "a.eval", model=model, org=org)
    error = import_error(tmp_path / "logs")
    assert error.file == str(log) and error.key == f"scenario.inspect_logs.{field}"
    assert "sample 'b-0' (epoch 1)" in error.message and "control character" in error.message
    assert "\x00" not in str(error) and "\x1b" not in str(error)  # shown escaped


def test_a_nul_in_a_model_name_is_exit_2_and_nothing_is_written(tmp_path, capsys):
    write_log(tmp_path / "logs" / "a.eval", model="acme\x00/small")
    db = tmp_path / "never.duckdb"
    code = main(["run", "provider_vs_size_inspect", f"scenario.inspect_logs.path={tmp_path / 'logs'}", *CLI_MAPPING,
                 f"store.path={db}", f"report.output_dir={tmp_path / 'report'}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "acme\\x00/small" in " ".join(err.split()) and not db.exists()
    assert not (tmp_path / "report").exists()


# -- file names that are not UTF-8 --------------------------------------------------------------------

def test_a_log_named_in_another_encoding_is_imported_and_named_with_escapes(tmp_path, capsys):
    folder = tmp_path / "logs"
    good = write_log(folder / "good.eval")
    odd = Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.eval"))  # Latin-1, as an older system wrote it
    write_log(odd, model="bolt/mini", org="Bolt", size=3.0)
    assert len(read_inspect_logs(settings(folder)).traces) == 6
    good.unlink()
    unmapped = ["scenario.inspect_logs.label.values={C: COMPLIANCE}"]  # the odd log's 'I' scores are not mapped
    code = main(["plan", "provider_vs_size_inspect", f"scenario.inspect_logs.path={folder}", *CLI_MAPPING[:1],
                 *unmapped, *CLI_MAPPING[2:], f"store.path={tmp_path / 'never.duckdb'}"])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "caf\\xe9.eval" in err and "scenario.inspect_logs.label.values" in err


# -- one model, two providers -------------------------------------------------------------------------

def test_one_model_with_two_providers_is_refused_naming_both_logs(tmp_path, capsys):
    first = write_log(tmp_path / "logs" / "a.eval", org="Acme")
    second = write_log(tmp_path / "logs" / "b.eval", org="Apex")
    error = import_error(tmp_path / "logs")
    assert error.key == "scenario.inspect_logs.provider"
    text = str(error)
    assert str(first) in text and str(second) in text and "'Acme'" in text and "'Apex'" in text
    db = tmp_path / "never.duckdb"
    code = main(["summary", "provider_vs_size_inspect", f"scenario.inspect_logs.path={tmp_path / 'logs'}",
                 *CLI_MAPPING, f"store.path={db}"])
    assert code == 2 and "one model has one provider" in " ".join(capsys.readouterr().err.split())
    assert not db.exists()


def test_one_model_with_two_sizes_in_a_traces_file_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"model": ["m", "m"], "provider": ["P", "P"], "params_b": ["7", "70"], "prompt_id": ["a", "b"],
                  "label": ["REFUSAL", "COMPLIANCE"]}).to_csv(path, index=False)
    with pytest.raises(SpecError) as err:
        read_traces_file(str(path))
    assert "row 3, column 'params_b'" in str(err.value) and "row 2" in str(err.value)
