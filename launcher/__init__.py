"""launcher: declarative, YAML-driven training jobs on Modal."""

__version__ = "0.1.0"
