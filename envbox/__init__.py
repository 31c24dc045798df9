"""envbox: per-application tool versions at their standard absolute paths."""

__version__ = "0.1.0"
