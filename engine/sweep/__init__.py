"""Sweeps: Hydra multirun over any key of a study. Jobs write shards; the merge loads them into the
study database, tagged by the swept values; the sweep report compares the settings."""

from engine.sweep.expand import Sweep, SweepJob, expand_sweep
from engine.sweep.launch import SweepFailed, SweepResult, run_sweep

__all__ = ["Sweep", "SweepJob", "SweepFailed", "SweepResult", "expand_sweep", "run_sweep"]
