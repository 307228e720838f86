"""The docs' tables and figures, from the runs published under `results/` (`__main__.py`).

Nothing here imports JAX (`--check` must stay fast), except `record`, which writes a run record.
"""
