"""Command line: `python -m engine run|plan|summary|report|judge STUDY [hydra overrides...]`, `export`, `compare A B`, `watch STUDY`, `new STUDY`.

Heavy imports (litellm, llama.cpp, Hydra) happen inside the commands so that --help is instant.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path

EXIT_SPEC = 2
EXIT_RUNTIME = 1
EXIT_BUDGET = 3  # the study's budget stopped the run: raise executor.budget.* and rerun to finish


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Compile a study spec into trials, run them through one model gateway into DuckDB, "
                    "and summarise the results.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "run a study (resumes; finished trials are skipped)"),
                       ("plan", "print cells, trials, estimated calls, tokens and cost; call nothing"),
                       ("summary", "print the per-cell table from the study database; call nothing"),
                       ("report", "render the study's report (HTML and PDF) from its database; call nothing"),
                       ("judge", "grade stored responses again with the study's judges (or --judge ones); calls "
                                 "the judges' models only, never the models under test")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("study", help="a study name in studies/ or a path to a study .yaml")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. design.seeds=3 model_set=...")
        p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                       help="a folder of your own config groups (model/, model_set/, ...), searched before the "
                            "shipped ones (repeatable; also ENGINE_CONFIG_PATH)")
        if name in ("run", "plan", "report"):
            p.add_argument("-m", "--multirun", action="store_true",
                           help="sweep: one job per setting (e.g. generation.temperature=0,0.7 and the study's "
                                "hydra.sweeper.params), merged into the study database, with a sweep report")
        if name == "run":
            p.add_argument("--dry-run", action="store_true", help="same as `plan`")
            p.add_argument("--no-progress", action="store_true", help="no live progress display")
            p.add_argument("--no-report", action="store_true", help="skip rendering the report")
            p.add_argument("--calibrate", action="store_true",
                           help="before the report, simulate the design for its calibration section (default draws; "
                           "about a minute); `calibrate` recomputes it with more")
            p.add_argument("--no-judge", action="store_true",
                           help="skip the judges (grade later with `python -m engine judge STUDY`)")
        if name == "judge":
            p.add_argument("--judge", action="append", dest="judges", metavar="ID",
                           help="only this judge (repeatable); default: all of the study's judges")
            p.add_argument("--no-progress", action="store_true", help="no live progress display")
        if name in ("run", "report"):
            p.add_argument("--formats", default="html,pdf",
                           help="report formats, comma-separated: html, pdf (default: html,pdf)")
    text = ("compare two finished studies, two spec versions of one study, or one design on two versions of a "
            "model: B - A per matched cell and metric with paired 95% intervals, what differs between the specs, "
            "and a report (HTML and PDF); calls nothing")
    p = sub.add_parser("compare", help=text, description=text)
    side = ("STUDY (composed with its overrides, like run), STUDY:SPEC_HASH (a version its database holds), "
            "DATABASE.duckdb, or DATABASE.duckdb:SPEC_HASH")
    p.add_argument("a", metavar="A", help=f"the baseline: {side}")
    p.add_argument("b", metavar="B", help="the other side, in the same forms (differences are B - A)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both A and B (when they are studies)")
    p.add_argument("--a", dest="a_overrides", action="append", default=[], metavar="OVERRIDE",
                   help="a Hydra override for A only (repeatable)")
    p.add_argument("--b", dest="b_overrides", action="append", default=[], metavar="OVERRIDE",
                   help="a Hydra override for B only (repeatable)")
    p.add_argument("--map", dest="mapping", action="append", default=[], metavar="A_LEVEL=B_LEVEL",
                   help="match A's level (e.g. a model key) to B's: --map gpt4o=gpt4o_2025_08 (repeatable)")
    p.add_argument("--metric", dest="metrics", action="append", metavar="NAME",
                   help="a metric to compare (repeatable; default: the scenario's headline metrics)")
    p.add_argument("--out", metavar="DIR", help="where the report goes (default: reports/compare-<A>-vs-<B>)")
    p.add_argument("--formats", default="html,pdf", help="report formats, comma-separated: html, pdf")
    p.add_argument("--no-report", action="store_true", help="print the table only; write nothing")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help="a folder of your own config groups, as for run")
    text = ("write a commented starting study and its model set that run as they are on the local models: "
            "studies/STUDY.yaml and conf/model_set/STUDY_models.yaml, or in --dir; overwrites nothing")
    p = sub.add_parser("new", help=text, description=text)
    p.add_argument("study", help="the new study's name (lower-case letters, digits, _)")
    p.add_argument("--scenario", required=True, help="escalation, jailbreak or agentic_misalignment")
    p.add_argument("--dir", metavar="DIR", help="a folder of your own, outside the repository (then run it with "
                   "--config-dir DIR/conf, which the command prints)")
    text = ("follow a running study from another terminal: per cell, trials stored/planned and the headline "
            "metrics; errors, spend, routes and the ETA, from the snapshot the run publishes; calls nothing")
    p = sub.add_parser("watch", help=text, description=text)
    p.add_argument("study", help="a study name in studies/ or a path to a study .yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides: the same as the study is run with")
    p.add_argument("--once", action="store_true", help="print the snapshot once and exit (for logs and scripts)")
    p.add_argument("--every", type=float, default=2.0, metavar="S", help="seconds between refreshes (default 2)")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help="a folder of your own config groups, as for run")
    text = ("simulate the study's own design under each claim's boundary and stated effect with the report's own "
            "tests and intervals: every claim's false-support rate and power, every interval type's coverage and the "
            "cells' half-width, with Monte Carlo errors; stored in the study database for the report")
    p = sub.add_parser("calibrate", help=text, description=text)
    p.add_argument("study", help="a study name in studies/ or a path to a study .yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides: the same as the study is run with")
    p.add_argument("--draws", type=int, default=None, metavar="N",
                   help="simulated studies per figure (default 80: under a minute for each seed study)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="the simulation's seed (default 0)")
    p.add_argument("--model-sd", type=float, default=None, metavar="SD",
                   help="SD of a model's log-odds about its provider's in the simulated studies of claims read "
                        "across models (default 0.5, an assumption; the imported 21-model data's mixed model: 1.02)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help="a folder of your own config groups, as for run")
    text = "write the study's trials as logs for another tool (inspect: one Inspect .eval per model x condition); call nothing"
    p = sub.add_parser("export", help=text, description=text)
    p.add_argument("format", choices=["inspect"], help="the output format")
    p.add_argument("study", help="a study name in studies/ or a path to a study .yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides: the same as the study was run with")
    p.add_argument("--out", metavar="DIR", help="where to write (default: <store folder>/<study>-inspect, e.g. results/model_size-inspect)")
    p.add_argument("--config-dir", action="append", default=[], metavar="DIR",
                   help="a folder of your own config groups, as for run")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    # Overrides may come before or after flags: collect the leftovers as overrides too.
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if a.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra and not hasattr(args, "overrides"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = [*getattr(args, "overrides", []), *extra]
    if getattr(args, "formats", None) is not None:
        from engine.report.render import report_formats

        try:  # a usage error before anything is loaded, run or written
            args.formats = report_formats(args.formats)
        except ValueError as exc:
            parser.error(f"argument --formats: {exc}")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from rich.console import Console
    from rich.markup import escape

    from engine.analyze.live import SnapshotUnreadable
    from engine.kernel.errors import ReportError, SpecError, StoreBusy, WeightsError
    from engine.kernel.redaction import redact

    # Wide tables stay readable when output goes to a file or CI log.
    console = Console(width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())  # a message is one line in a log, never cut at 80
    from engine.sweep import SweepFailed

    try:
        if getattr(args, "config_dir", None):
            from engine.spec.load import add_config_dirs

            add_config_dirs(args.config_dir)
        if getattr(args, "multirun", False):
            return _sweep(args, console)
        if getattr(args, "dry_run", False):
            return _plan(args, console)
        return COMMANDS[args.command](args, console)
    except SpecError as exc:
        # Not wrapped at the terminal width: each line stays "spec error <file>: key '<key>': <message>".
        err.print(f"[bold red]spec error[/] {escape(redact(str(exc)) or '')}", highlight=False, soft_wrap=True)
        return EXIT_SPEC
    except (WeightsError, FileNotFoundError, ReportError, StoreBusy, SweepFailed, SnapshotUnreadable) as exc:
        err.print(f"[bold red]error[/] {escape(redact(str(exc)) or '')}", highlight=False)
        return EXIT_RUNTIME


MIN_DRAWS = 10


def _calibrate(args, console) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from engine.kernel.errors import SpecError
    from engine.report.sections import calibration
    from engine.study import calibrate_study

    draws = calibration.DEFAULT_DRAWS if args.draws is None else args.draws
    if draws < MIN_DRAWS:
        raise SpecError(f"must be at least {MIN_DRAWS} (a share over fewer simulated studies says nothing), "
                        f"not {draws}", key="--draws")
    if args.seed < 0:
        raise SpecError(f"must be 0 or more, not {args.seed}", key="--seed")
    model_sd = calibration.MODEL_SD if args.model_sd is None else args.model_sd
    if not (math.isfinite(model_sd) and 0 <= model_sd <= 5):
        raise SpecError(f"must be a log-odds SD from 0 to 5, not {args.model_sd}", key="--model-sd")
    bar = Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=console, disable=args.no_progress)
    task = bar.add_task("calibrate", total=None)
    with bar:
        loaded, result, stored = calibrate_study(args.study, args.overrides, draws=draws, seed=args.seed,
                                                 model_sd=model_sd,
                                                 progress=lambda n: bar.advance(task, n),
                                                 start=lambda total: bar.update(task, total=total))
    study = loaded.spec.name
    console.print(_terminal(calibration.provenance(result, study)))
    for title, headers, rows in (("claims", calibration.CLAIM_HEADERS, calibration.claim_rows(result)),
                                 ("intervals", calibration.INTERVAL_HEADERS, calibration.interval_rows(result))):
        console.print(_rich_table(title, _frame(headers, rows)))
    for line in result["basis"]:
        console.print(_terminal(f"simulated from: {line}"))
    console.print(_terminal("stored in the study database for its report's calibration section" if stored else
                         "not stored: the study has no database yet (run it first to keep a calibration)"), soft_wrap=True)
    return 0


def _frame(headers, rows):
    import pandas as pd

    return pd.DataFrame(list(rows), columns=headers)


def _plan(args, console) -> int:
    from engine.plan.compile import compile_plan
    from engine.study import estimate_plan, load_study

    from rich.markup import escape

    loaded = load_study(args.study, args.overrides)
    plan = compile_plan(loaded)
    est = estimate_plan(plan)
    spec = loaded.spec
    _warn_without_results(console, loaded)
    console.print(f"[bold]{_terminal(spec.title)}[/]  (spec {loaded.spec_hash}, store {_terminal(spec.store.path)})")
    console.print(f"cells {est.cells} · trials {est.trials} · model calls ≤ {est.calls:,} · "
                  f"tokens ≤ {est.prompt_tokens + est.completion_tokens:,} "
                  f"(prompt {est.prompt_tokens:,}, completion {est.completion_tokens:,}) · "
                  f"cost ≤ ${est.usd:.2f}")
    for key, row in est.per_model.items():
        console.print(f"  {escape(f'{key:24s}')} calls ≤ {int(row['calls']):>6,}  tokens ≤ "
                      f"{int(row['prompt_tokens'] + row['completion_tokens']):>9,}  ≤ ${row['usd']:.2f}")
    budget = spec.executor.budget
    console.print(f"budget cap: {'$' + format(budget.max_usd, 'g') if budget.max_usd is not None else 'none'}"
                  f", {budget.max_tokens if budget.max_tokens is not None else 'no'} token cap")
    _print_precision(console, plan, est)
    return 0


# More cells than this are summarised by their range of half-widths.
MAX_CELL_ROWS = 30


def _print_precision(console, plan, est) -> None:
    from rich.markup import escape

    from engine.analyze.design_power import cells_display, comparisons_display, precision_preamble
    from engine.study import plan_precision_of, seeds_cost

    pp, unread = plan_precision_of(plan)
    console.print("\n[bold]Precision and power at the planned N[/]")
    for line in precision_preamble(pp):
        console.print(f"  {escape(line)}", soft_wrap=True, highlight=False)
    if unread:
        console.print(f"  database not read: {escape(unread)}")
    for basis in pp.bases:
        console.print(f"  {escape(basis.statement())}", soft_wrap=True, highlight=False)
    console.print(f"  trials cluster on {pp.unit}")
    cells = cells_display(pp)
    if len(cells) > MAX_CELL_ROWS:
        console.print(f"  first {MAX_CELL_ROWS} of {len(cells)} cells:")
        cells = cells.head(MAX_CELL_ROWS)
    _print_table(console, "Expected 95% half-width per design cell (mean over studies)", cells)
    _print_table(console, "Minimum detectable difference per comparison (80% power, alpha 0.05)",
                 comparisons_display(pp))
    if pp.target is not None:
        for line in seeds_cost(pp.target, est, plan.loaded.spec.executor.budget):
            style = "bold red" if line.lstrip().startswith("OVER BUDGET") else None
            console.print(escape(line), style=style, soft_wrap=True, highlight=False)


def _print_table(console, title: str, table) -> None:
    if table.empty:
        return
    grid = _rich_table(title, table)
    if console.measure(grid, options=console.options.update(max_width=10_000)).maximum <= console.width:
        console.print(grid)
    else:  # e.g. a log file at 80 columns: a block per cell, one metric a line, rather than folded cells
        for line in _narrow_table(title, table):
            console.print(_terminal(line), highlight=False, soft_wrap=True)
    from engine.spec.schema import BASE_MODEL_MARK, BASE_MODEL_NOTE

    if any(BASE_MODEL_MARK in str(v) for v in table.to_numpy().ravel()):
        console.print(BASE_MODEL_NOTE, highlight=False, soft_wrap=True)


def _narrow_table(title: str, table) -> list[str]:
    """The table as text for a narrow screen or a log: per row, its descriptive columns and N on one
    line, then one line per metric with its own n."""
    metrics = [c for c in table.columns if f"{c} n" in table.columns]
    described = [c for c in table.columns if c not in metrics and not str(c).endswith(" n") and c != "N"]
    width = max(len(str(m)) for m in metrics) if metrics else 0
    lines = [title]
    for _, row in table.iterrows():
        head = " · ".join(str(row[c]) for c in described if str(row[c]) != "—")
        lines.append(head + (f"   (N {row['N']})" if "N" in table.columns else ""))
        lines += [f"    {str(m):<{width}}  {row[m]}" + (f" (n={row[f'{m} n']})" if str(row[m]) != "—" else "")
                  for m in metrics]
    return lines


def _rich_table(title: str, table):
    from rich.table import Table

    # A metric's own n (column "<label> n") is shown inside the metric's cell: the table stays narrow
    # enough that cell labels are not folded.
    merged = {c: str(c)[:-2] for c in table.columns if str(c).endswith(" n") and str(c)[:-2] in table.columns}
    shown = [c for c in table.columns if c not in merged]
    out = Table(title=_terminal(title), show_lines=False)
    for column in shown:
        out.add_column(_terminal(column), overflow="fold")
    for _, row in table.iterrows():
        values = {c: str(row[c]) for c in shown}
        for n_column, metric in merged.items():
            if values[metric] != "—":  # nothing measured: no n to show
                values[metric] += f" (n={row[n_column]})"
        out.add_row(*[_terminal(values[c]) for c in shown])
    return out


def _terminal(text: object) -> str:
    """An author's, model's or file's string as rich markup that prints it as it is: brackets escaped,
    control and bidi characters (a terminal's escape sequences) shown as escapes."""
    from rich.markup import escape

    from engine.report.markdown import neutralise

    return escape(neutralise(str(text)))


def _table_title(loaded) -> str:

    return (f"{loaded.spec.title} — 95% intervals; N = finished/planned "
            f"{loaded.scenario.unit[1]}")


def _summary(args, console) -> int:
    from engine.study import study_summary

    loaded, table, live = study_summary(args.study, args.overrides)
    if live:
        console.print(_terminal(live), soft_wrap=True)
    if table.empty and not live:
        from engine.study import store_path

        # An empty table would print nothing at all: say why (e.g. the runs stored there had other
        # settings that enter the spec hash).
        console.print(_terminal(f"{store_path(loaded)} holds no finished trial of this spec ({loaded.spec_hash}): "
                                "run it, or give the overrides it was run with"), soft_wrap=True)
        return 0
    _print_table(console, _table_title(loaded), table)
    return 0


def _watch(args, console) -> int:
    """The snapshot a running study publishes, refreshed until the run ends (or once)."""
    import time

    from rich.live import Live

    from engine.study import load_study, store_path
    from engine.store.lock import lock_holder
    from engine.store.snapshot import read_snapshot

    if not args.every > 0:
        raise SystemExit("argument --every: must be a number of seconds above 0")
    loaded = load_study(args.study, args.overrides)
    db = store_path(loaded)
    snap = read_snapshot(db)
    if snap is None:
        holder = lock_holder(db)
        why = (f"{holder} holds it and publishes no snapshot" if holder else
               "no run of it is under way" if db.exists() else "it has not been run yet")
        console.print(_terminal(f"no live snapshot of {db}: {why}. `python -m engine summary {args.study}` reads "
                                "what its database holds"), soft_wrap=True)
        return EXIT_RUNTIME
    if args.once or not console.is_terminal:
        _print_live(console, snap)
        return 0
    with Live(console=console, auto_refresh=False) as live:
        while True:
            live.update(_live_renderable(snap), refresh=True)
            if not snap.running:
                return 0
            time.sleep(args.every)
            snap = read_snapshot(db) or snap


def _print_live(console, snap) -> None:
    from engine.analyze.live import live_view

    view = live_view(snap)  # SnapshotUnreadable: said by main()
    for line in view.lines:
        console.print(_terminal(line), soft_wrap=True)
    _print_table(console, "per cell (N = finished/planned)", view.table)


def _live_renderable(snap):
    from rich.console import Group
    from rich.text import Text

    from engine.analyze.live import live_view
    from engine.report.markdown import neutralise

    view = live_view(snap)
    return Group(*(Text(neutralise(line)) for line in view.lines), _rich_table("per cell (N = finished/planned)",
                                                                                view.table))


def _run(args, console) -> int:
    from engine.study import load_study, writing

    loaded = load_study(args.study, args.overrides)
    with writing(loaded, "run"):  # the run and its report: one writer of the study throughout
        return _run_loaded(args, console, loaded)


def _new(args, console) -> int:
    from engine.spec.new_study import write_new_study

    made = write_new_study(args.study, args.scenario, Path(args.dir) if args.dir else None)
    console.print(f"wrote {_terminal(made.study)}\n  and {_terminal(made.model_set)}", highlight=False)
    console.print("see the design, cost and power:  " + _terminal(made.command("plan")), highlight=False)
    console.print("run it (local models, no API key): " + _terminal(
        made.command("run") if made.config_dir else f"make study STUDY={args.study}"), highlight=False)
    return 0


def _warn_without_results(console, loaded) -> None:
    from engine.report.catalog import no_results_warning, validate_sections

    warning = no_results_warning(validate_sections(loaded.spec.report.sections, loaded.scenario), loaded.scenario)
    if warning:
        console.print(f"[bold yellow]warning[/] {_terminal(warning)}", soft_wrap=True, highlight=False)


def _run_loaded(args, console, loaded) -> int:
    from engine.study import run_loaded

    _warn_without_results(console, loaded)
    summary, table = run_loaded(loaded, show_progress=not args.no_progress, judge=not args.no_judge,
                                calibrate=args.calibrate)
    _print_table(console, _table_title(loaded), table)
    s = summary.stats
    console.print(
        f"trials: {summary.planned} planned, {summary.skipped_done} already finished, {summary.done} done now, "
        f"{summary.errors} errors, {summary.not_run_budget} not run (budget) · live calls {s.live_calls}, "
        f"cache hits {s.cache_hits}, retries {s.retries}, tokens {s.tokens:,}, cost ${s.cost_usd:.4f} · "
        f"{summary.seconds:.1f}s · {summary.backend} executor · database {_terminal(loaded.spec.store.path)}")
    if s.rate_limited or s.empty_replies or s.timeouts or s.faulty_replies:
        console.print(f"provider trouble: {s.rate_limited} rate-limited (429), {s.empty_replies} empty replies, "
                      f"{s.timeouts} timeouts, {s.faulty_replies} failed or malformed replies, "
                      "all retried with backoff")
    if s.silent_replies:
        console.print(f"{s.silent_replies} local replies ended without text (the model's answer, not retried: "
                      "the scenario counts each as a non-answer)")
    if summary.replayed:
        console.print(f"{summary.replayed} trials played again after their Ray worker or node was lost "
                      "(nothing of the lost attempt was stored)")
    for route, e in summary.routes.items():
        console.print(f"  route {route}: {e.rate_limited} × 429, slots halved {e.decreases}× (down to "
                      f"{e.min_slots}), Retry-After pauses {e.paused_s:.1f}s", markup=False)
    if summary.imported:
        console.print(summary.imported, soft_wrap=True, highlight=False, markup=False)  # a path may be long: one line
    if summary.judging:
        _print_judging(console, summary.judging)
    if summary.stopped_by_budget:
        console.print(f"[bold yellow]budget reached[/] ({_terminal(summary.budget_note)}): finished trials and "
                      "verdicts are stored; the rest were not started. Raise executor.budget.max_usd (or "
                      "executor.budget.max_tokens) and rerun to finish; the report is rendered once the study "
                      "is complete (`python -m engine report` renders what is there now).")
        return EXIT_BUDGET
    if (summary.done + summary.skipped_done or summary.imported) and not args.no_report:
        _report(args, console, loaded)
    return EXIT_RUNTIME if summary.errors and not summary.done else 0


def _print_judging(console, j) -> None:
    console.print(f"verdicts ({', '.join(j.judges)}): {j.subjects} stored responses + gold sets · {j.graded} graded "
                  f"now, {j.errors} judge errors (label ERROR), {j.already_done} already graded, "
                  f"{j.not_run_budget} not run (budget) · {j.seconds:.1f}s", markup=False)


def _judge(args, console) -> int:
    from engine.study import regrade_study

    loaded, summary = regrade_study(args.study, args.overrides, only=args.judges, show_progress=not args.no_progress)
    _print_judging(console, summary)
    if summary.not_run_budget:
        console.print("[bold yellow]budget reached[/]: the verdicts made are stored; raise executor.budget.max_usd "
                      "(or executor.budget.max_tokens) and rerun to grade the rest")
        return EXIT_BUDGET
    from engine.kernel.spec_redaction import redact_command

    command = redact_command(shlex.join(["python", "-m", "engine", "report", args.study, *args.overrides]))
    console.print(f"re-render the report with: {command}")
    return 0


def _report(args, console, loaded=None) -> int:
    import time

    from engine.report.study_report import build_report_for
    from engine.study import load_study, writing

    started = time.perf_counter()
    loaded = loaded or load_study(args.study, args.overrides)
    with writing(loaded, "report"):
        report = build_report_for(loaded, formats=args.formats)
    made = [_terminal(p) for p in (report.outputs.html, report.outputs.pdf) if p]
    console.print(f"report ({report.outputs.engine}, {time.perf_counter() - started:.1f}s): "
                  f"{_terminal(report.outputs.qmd)} -> {', '.join(made)}", soft_wrap=True)
    return 0


def _export(args, console) -> int:
    from pathlib import Path

    from engine.export import export_inspect
    from engine.study import load_study, writing

    loaded = load_study(args.study, args.overrides)
    with writing(loaded, "export"):
        result = export_inspect(loaded, Path(args.out) if args.out else None)
    for path in result.files:
        console.print(str(path), highlight=False, soft_wrap=True, markup=False)
    console.print(f"{len(result.files)} Inspect logs, {result.samples} samples ({result.errored} errored) in "
                  f"{result.out_dir}; open them with: inspect view --log-dir {result.out_dir}",
                  highlight=False, soft_wrap=True, markup=False)
    return 0


def _compare(args, console) -> int:
    from pathlib import Path

    from engine.compare import compare_studies
    from engine.compare.report import build_compare_report, report_dir, terminal_table, terminal_title
    from engine.compare.sections import significant, summary_sentence
    from engine.spec.load import check_output_path

    if args.out is not None and not args.no_report:
        check_output_path(args.out, "--out", folder=True)  # before anything is read
    comparison = compare_studies(args.a, args.b, overrides=args.overrides, a_overrides=args.a_overrides,
                                 b_overrides=args.b_overrides, mapping=args.mapping, metrics=args.metrics)
    _print_table(console, terminal_title(comparison), terminal_table(comparison))
    console.print(_terminal(summary_sentence(comparison)) + (" (the Holm p column)" if significant(comparison) else ""),
                  highlight=False, soft_wrap=True)
    shown = [c for c in comparison.changes if c.kind != "cosmetic"]
    console.print(f"specs differ in {len(shown)} keys" + (":" if shown else " (report and executor keys aside)"),
                  highlight=False)
    for change in shown:
        console.print(f"  {_terminal(change.key)} ({change.kind}): {_terminal(change.a)} -> {_terminal(change.b)}",
                      highlight=False, soft_wrap=True)
    if args.no_report:
        return 0
    report = build_compare_report(comparison, Path(args.out) if args.out else report_dir(comparison),
                                  formats=args.formats)
    made = [_terminal(p) for p in (report.outputs.html, report.outputs.pdf) if p]
    console.print(f"comparison report ({report.outputs.engine}): {_terminal(report.outputs.qmd)} -> {', '.join(made)}",
                  soft_wrap=True)
    return 0


def _sweep(args, console) -> int:
    """run/plan/report -m: the jobs of a sweep, then (run) launch, merge and the sweep report."""
    from engine.sweep import expand_sweep

    sweep = expand_sweep(args.study, args.overrides)
    console.print(f"[bold]sweep {sweep.sweep_id}[/]: {len(sweep.jobs)} jobs over {_terminal(', '.join(sweep.keys) or '-')}"
                  f" · shards in {_terminal(sweep.dir)} · database {_terminal(sweep.store_path)}")
    if args.command == "plan" or getattr(args, "dry_run", False):
        from engine.plan.compile import compile_plan
        from engine.study import estimate_plan

        for job in sweep.jobs:
            est = estimate_plan(compile_plan(job.loaded))
            console.print(f"  job {job.index} ({job.swept or '-'}): cells {est.cells} · trials {est.trials} · "
                          f"calls ≤ {est.calls:,} · cost ≤ ${est.usd:.2f}", markup=False)
        return 0
    from engine.store.lock import study_lock

    # The sweep (seed, jobs, merge) and its report: one writer of the study throughout.
    with study_lock(sweep.store_path, f"{args.command} -m"):
        return _sweep_locked(args, console, sweep)


def _sweep_locked(args, console, sweep) -> int:
    import time

    from engine.sweep.report import build_sweep_report
    from engine.sweep import run_sweep

    if args.command == "run":
        started = time.perf_counter()
        result = run_sweep(args.study, args.overrides, sweep=sweep)  # expanded once, above
        added = ", ".join(f"{t} +{n}" for t, n in result.merged.items() if n)
        console.print(f"merged {len(sweep.jobs)} shards in {time.perf_counter() - started:.1f}s: {added or 'nothing new'}")
        if args.no_report:
            return 0
    report = build_sweep_report(sweep, formats=args.formats)
    made = [_terminal(p) for p in (report.outputs.html, report.outputs.pdf) if p]
    console.print(f"sweep report ({report.outputs.engine}): {_terminal(report.outputs.qmd)} -> {', '.join(made)}",
                  soft_wrap=True)
    return 0


# Each subcommand's handler (`run --dry-run` is `plan`).
COMMANDS = {"run": _run, "plan": _plan, "summary": _summary, "report": _report, "judge": _judge, "export": _export,
            "compare": _compare, "watch": _watch, "new": _new, "calibrate": _calibrate}
