"""Pre-registration: what a study's report tests, hashed before the study's first data
(engine/store/registration.py), and the `preregistration` section, which says whether the claims and
contrasts the report tests are the ones registered before any data, or lists the amendments.

What is registered (`registered_settings`), and why these:
- `report`: the claims (`report.claims`, each with its kind, boundary or range, and effect) and any
  other setting of the report block but its sections, output folder and sweep metrics: what the
  verdicts are, and how they are decided and corrected;
- `sections`: what each section that tests something registers (`Section.registered`): for the paired
  contrasts, the primary contrasts (named, or the reference model by name, so reordering the models is
  a change), the metric or tier, the conditions and models compared;
- `primary_judge`: whose verdicts the rates count (its kind, model, rubric and fingerprint);
- `analysis`: the scenario's settings that define its metrics and analyses
  (`Scenario.analysis_settings`, e.g. the jailbreak tier and parameter basis).
Titles, captions, chart and table options, the design and the executor are not: they change how
results look, which data there are, or how they are obtained, not what is tested on them. Nothing of
this enters the spec hash or a trial id."""

from __future__ import annotations

import json
from typing import Any

from engine.judging.catalog import make_judge
from engine.kernel.contracts import NoOptions, Rendered, Section
from engine.kernel.registry import REGISTRY, register_section
from engine.kernel.spec_redaction import redact_spec
from engine.report.markdown import bullet_list, escape, table
from engine.spec.load import LoadedSpec
from engine.store.registration import Amendment, Registration, amendments, register, registration, settings_hash

# Keys of the report block that only say how and where results are shown.
UNREGISTERED_REPORT_KEYS = ("sections", "output_dir", "sweep_metrics")


def registered_settings(loaded: LoadedSpec) -> dict[str, Any]:
    """The settings a study registers (see the module's docstring), secrets masked."""
    spec, scenario = loaded.spec, loaded.scenario
    report = {k: v for k, v in (loaded.resolved.get("report") or {}).items() if k not in UNREGISTERED_REPORT_KEYS}
    sections: dict[str, Any] = {}
    seen: dict[str, int] = {}
    for raw in spec.report.sections:  # validated with the spec (engine/checks.py)
        section = REGISTRY.find("section", str(raw["type"]), scenario.name).obj()
        options = section.Options.model_validate(raw)
        registered = section.registered(options, loaded)
        if registered is None:
            continue
        seen[section.type] = seen.get(section.type, 0) + 1
        sections[section.type if seen[section.type] == 1 else f"{section.type}[{seen[section.type]}]"] = registered
    judge = None
    if spec.primary_judge is not None:
        primary = make_judge(spec.primary_judge, spec.judges[spec.primary_judge], scenario.name)
        model = primary.spec.model
        judge = {"id": spec.primary_judge, "kind": primary.kind, "model": model.litellm_id if model else None,
                 "rubric": primary.spec.rubric.key, "fingerprint": primary.fingerprint}
    settings = {"report": report, "sections": sections, "primary_judge": judge,
                "analysis": scenario.analysis_settings(spec, loaded.scenario_params)}
    return redact_spec(json.loads(json.dumps(settings, default=str)))


def register_study(con, loaded: LoadedSpec, command: str) -> str:
    """Register the study's settings, or record that they changed (engine/store/registration.py)."""
    return register(con, loaded.spec.name, registered_settings(loaded), loaded.spec_hash, command)


def when(moment) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def shown(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def change_text(change: dict[str, Any]) -> str:
    if "old" not in change:
        return f"{change['key']} added ({shown(change['new'])})"
    if "new" not in change:
        return f"{change['key']} removed (was {shown(change['old'])})"
    return f"{change['key']}: {shown(change['old'])} → {shown(change['new'])}"


MAX_CHANGES_SHOWN = 8


def changes_text(amendment: Amendment) -> str:
    listed = [change_text(c) for c in amendment.changes[:MAX_CHANGES_SHOWN]]
    more = len(amendment.changes) - len(listed)
    return "; ".join(listed) + (f"; and {more} more" if more > 0 else "")


def what_is_registered(settings: dict[str, Any]) -> list[str]:
    """One line per part of the registered settings."""
    claims = settings.get("report", {}).get("claims") or []
    out = [f"{len(claims)} claim{'s' if len(claims) != 1 else ''} (report.claims)"]
    for name, options in (settings.get("sections") or {}).items():
        if options.get("primary"):
            pairs = ", ".join(f"{a} − {b}" for a, b in options["primary"])
            out.append(f"{name}: primary contrasts {pairs}")
        elif "reference" in options:
            out.append(f"{name}: primary contrasts each model against {options['reference']}")
        else:
            out.append(f"{name}: {shown(options, 120)}")
    judge = settings.get("primary_judge")
    if judge:
        out.append(f"primary judge {judge['id']} ({judge['kind']}" + (f", {judge['model']}" if judge["model"] else "")
                   + f", rubric {judge['rubric']})")
    analysis = settings.get("analysis") or {}
    if analysis:
        out.append("analysis settings " + ", ".join(f"{k} = {shown(v)}" for k, v in analysis.items()))
    return out


def _data_moment(reg: Registration) -> str:
    if reg.imported_at is not None:
        return ("before the traces were imported (an analysis-only study: before any data means before the "
                "import into this database; the file existed, and may have been read, before)")
    return "before the study's first trial"


def status_text(reg: Registration | None, amended: list[Amendment], current: str, study: str) -> str:
    if reg is None:
        return (f"No registration of study {study} is on record: its database has not been run or reported "
                "with this version of the engine (a report rendered by python -m engine report records one).")
    if not reg.before_data:
        head = (f"The claims, primary contrasts and analysis settings were first registered on "
                f"{when(reg.registered_at)}, after the study had data (its database holds runs from before "
                "registrations were recorded): this report cannot show that they were written before the data.")
    elif not amended:
        head = (f"The claims, primary contrasts and analysis settings this report tests were registered before any "
                f"data on {when(reg.registered_at)}, {_data_moment(reg)}.")
    else:
        head = (f"The claims, primary contrasts and analysis settings were registered before any data on "
                f"{when(reg.registered_at)}, {_data_moment(reg)}, and changed after it: "
                f"{len(amended)} amendment{'s' if len(amended) != 1 else ''}, listed below.")
    last = amended[-1].new_hash if amended else reg.settings_hash
    if current != last:
        return head + (f" The settings of this report (hash {current}) differ from the last on record ({last}); "
                       "the change has not been recorded yet (python -m engine report records it).")
    if amended and current == reg.settings_hash:
        return head + " The report tests the registered settings again (the amendments were undone)."
    if amended:
        return head + (f" This report tests the amended settings (hash {current}), not the registered ones "
                       f"({reg.settings_hash}).")
    return head + f" They have not changed since (hash {current})."


@register_section
class PreregistrationSection(Section):
    """Whether the claims, primary contrasts and analysis settings the report tests were registered
    before any data, and every amendment since (what changed, when, seen by which command)."""

    type = "preregistration"
    Options = NoOptions

    def render(self, ctx, options) -> Rendered:
        study = ctx.spec.name
        reg = registration(ctx.con, study)
        amended = amendments(ctx.con, study)
        settings = registered_settings(ctx.loaded)
        md = ["## Pre-registration", escape(status_text(reg, amended, settings_hash(settings), study))]
        if reg is not None:
            md.append(escape("Registered:"))
            md.append(bullet_list(escape(line) for line in what_is_registered(reg.settings)))
        if amended:
            rows = [[str(a.number), when(a.seen_at), a.command, changes_text(a)] for a in amended]
            md.append(table(["#", "Seen", "By", "What changed (key: before → after)"], rows,
                            "Amendments of the registered settings, each recorded the first time a command saw it.",
                            "tbl-preregistration-amendments", ["r", "l", "l", "l"]))
        md.append(escape("What is registered: the claims (report.claims), the primary contrasts and what they "
                         "compare, the primary judge, and the scenario's analysis settings; not titles, captions, "
                         "the design or the executor. The registration is made before the first trial of a study, "
                         "and before the import of an analysis-only study; it changes neither the spec hash nor "
                         "any trial id."))
        return Rendered("\n\n".join(md))
