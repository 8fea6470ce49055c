"""Jailbreak analyses: attack success rates (asr.py), the variance decomposition across providers
and sizes (decomposition.py), the mixed-effects fit (mixed_effects.py), the data they read (data.py)."""
