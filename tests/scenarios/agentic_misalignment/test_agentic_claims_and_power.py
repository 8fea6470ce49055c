"""What blackmail_subfrontier's plan and claims promise: the stated MDD of its factor levels (16
unclustered pairs, the paired MOVER of Clopper-Pearson limits) has its power when simulated, and `calibrate` prints every
one of its claims and interval types with its Monte Carlo error (moved here from
tests/plan/test_power_holds.py and tests/analyze/test_calibration.py)."""

from power_checks import assert_power_holds, precision, row

from engine.cli import main


def test_stated_mdd_has_its_power_with_unclustered_pairs():
    # blackmail_subfrontier's factor levels: 16 independent pairs, the paired MOVER of Clopper-Pearson
    # limits, evaluated exactly at plan time.
    r = row(precision("blackmail_subfrontier"), "levels of threat", "blackmail_rate")
    assert (r.n, r.clusters) == (16, 16) and r.method == "exact, paired MOVER of Clopper-Pearson limits"
    assert_power_holds(r, draws=1500, seed=4, icc=0.0)


def test_the_cli_prints_every_claim_and_interval_type_with_its_mc_error(capsys):
    assert main(["calibrate", "blackmail_subfrontier", "--draws", "10", "--seed", "3", "--no-progress"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for claim in ("Blackmail needs goal", "Safety instructions", "Model size does not", "Blackmail varies by"):
        assert claim in out  # the first words of each claim (a table cell folds the rest)
    for kind in ("per-cell rate 95% CI", "paired contrast 95% CI"):
        assert kind in out
    assert "± " in out and "(10)" in out and "seed 3" in out
