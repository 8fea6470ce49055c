"""The checks across stages, run on a validated spec before anything is written: does the scenario
accept the design, is every judge a kind this study may use with a configuration and gold set it
can use, does every report section exist for this scenario. Each stage checks its own fields; what
two stages must agree to is checked here, once."""

from __future__ import annotations

from engine.judging.catalog import judge_class, judge_kinds, make_judge
from engine.judging.gold import load_gold
from engine.kernel.contracts import check_metric
from engine.kernel.errors import SpecError
from engine.kernel.extras import require
from engine.kernel.registry import REGISTRY
from engine.providers.prepare import check_prompt_formats
from engine.report.catalog import validate_sections
from engine.report.claim_validation import validate_claims
from engine.spec.load import LoadedSpec, Sources, override_key


def check_study(loaded: LoadedSpec) -> LoadedSpec:
    """`loaded`, if every cross-stage check passes; else a SpecError naming the file and key."""
    spec, scenario = loaded.spec, loaded.scenario
    try:
        if spec.executor.backend == "ray":
            require("ray", "ray", key="executor.backend")
        scenario.check_design(spec, loaded.scenario_params)
        check_judges(loaded)
        check_prompt_formats({**{f"models.{k}": (m.display_name, m) for k, m in spec.models.items()},
                              **{f"judges.{j}.model": (s.model.display_name, s.model)
                                 for j, s in spec.judges.items() if s.model is not None}})
        for i, (section, options) in enumerate(validate_sections(spec.report.sections, scenario)):
            section.check_study(options, loaded, f"report.sections.{i}")
        validate_claims(spec.report.claims, scenario, spec, levels=not narrowed_design(loaded.sources))
        for i, metric in enumerate(spec.report.sweep_metrics or []):
            check_metric(metric, scenario, f"report.sweep_metrics.{i}")
        check_assumed_sds(spec.design.assumed_sd, scenario)
    except SpecError as exc:
        raise loaded.sources.attributed(exc) from None
    return loaded


def check_assumed_sds(assumed: dict[str, float], scenario) -> None:
    """design.assumed_sd names mean metrics of the scenario."""
    kinds = {m.name: m.kind for m in scenario.metrics()}
    for name in assumed:
        check_metric(name, scenario, f"design.assumed_sd.{name}")
        if kinds[name] != "mean":
            raise SpecError(f"'{name}' is a rate: its SD follows from its rate (design.assumed_rate)",
                            key=f"design.assumed_sd.{name}")


def narrowed_design(sources: Sources) -> bool:
    """Whether the command line changed the design that the study's files give (a quick run on fewer
    levels) while the claims are the files': a claim may then name a level this run lacks, and is
    left unresolved rather than refused. Claims written on the command line must fit the design."""
    keys = [override_key(o) for o in sources.overrides]
    if any(k == "report" or k.startswith("report.claims") for k in keys):
        return False
    return any(k.split(".")[0] in ("design", "models") or k in sources.choices for k in keys)


def check_judges(loaded: LoadedSpec) -> None:
    """Every judge is a kind this study's scenario may use, with a configuration it can use and a
    gold set that exists; the primary judge is one of them."""
    spec, scenario = loaded.spec, loaded.scenario.name
    for judge_id, judge_spec in spec.judges.items():
        key = f"judges.{judge_id}.kind"
        if judge_class(judge_spec.kind, scenario) is None:
            owners = sorted({e.owner for e in REGISTRY.entries("judge") if e.name == judge_spec.kind and e.owner})
            where = f" belongs to scenario {', '.join(owners)}, not to {scenario}" if owners else " is unknown"
            raise SpecError(f"judge kind '{judge_spec.kind}'{where} (known: {', '.join(judge_kinds(scenario))})",
                            key=key)
        try:
            make_judge(judge_id, judge_spec, scenario).check()
            load_gold(judge_spec.rubric)
        except SpecError as exc:
            raise SpecError(exc.message, key=f"judges.{judge_id}.{exc.key}") from None
    if spec.primary_judge is not None and spec.primary_judge not in spec.judges:
        raise SpecError(f"'{spec.primary_judge}' is not among the study's judges "
                        f"({', '.join(spec.judges) or 'none'})", key="primary_judge")
    primary = spec.judges.get(spec.primary_judge) if spec.primary_judge else None
    if primary is not None and primary.model is not None and not primary.model.instruction_tuned:
        raise SpecError(f"the primary judge '{spec.primary_judge}' runs {primary.model.display_name}, a pretrained "
                        "base model (instruction_tuned: false): it continues text rather than judging; make an "
                        "instruction-tuned judge primary", key="primary_judge")
