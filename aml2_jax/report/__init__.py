"""The published tables and figures, generated from `results/` (`python -m aml2_jax.report`).

README.md and `docs/*.md` hold Markdown tables between marker comments
(`<!-- report:NAME -->` ... `<!-- /report:NAME -->`); this package renders each from the files
under `results/` and writes the figures into `docs/figures/`. `--check` says which tables differ
from the files, without writing; `publish` copies a finished run's small files into `results/`.

Nothing here imports JAX (reading and rendering must stay fast); only `record`, which writes a
run record for a command run outside `launch.py`, does.
"""
