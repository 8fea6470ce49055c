"""The engine's version, recorded with every study run."""

__version__ = "0.1.0"
