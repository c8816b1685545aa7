"""Helpers only the tests and benchmarks use, kept out of the installed package.

Importable when pytest or ``python -m bench...`` runs from the repository root (both put the
root on sys.path); the wheel carries ``calsync`` alone.
"""
