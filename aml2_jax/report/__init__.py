"""The docs' tables and figures from `results/` (`__main__.py`); no JAX import but `record`'s."""
