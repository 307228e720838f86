"""`--mode=sample`: a labelled PNG grid and an .npz of generated images from a trained workdir."""

from pathlib import Path

import numpy as np

from aml2_jax import console
from aml2_jax.cgan import generate
from aml2_jax.cgan.models import NUM_CLASSES
from aml2_jax.cgan.train import restore_generator
from aml2_jax.datasets import fashion_mnist
from aml2_jax.errors import UserError
from aml2_jax.plotting.image_grid import save_labelled_grid


def check_classes(classes: tuple[int, ...], num_per_class: int) -> None:
  """Refuses unknown labels and a non-positive count, naming the valid ones."""
  unknown = [c for c in classes if not 0 <= c < NUM_CLASSES]
  if unknown:
    names = ', '.join(f'{i} {n}' for i, n in enumerate(fashion_mnist.CLASS_NAMES))
    raise UserError(f'--labels has unknown classes {unknown}; Fashion-MNIST labels are 0-9 '
                    f'({names}).')
  if num_per_class <= 0:
    raise UserError(f'--num_per_class={num_per_class} must be > 0.')


def sample(config, workdir: Path, options) -> None:
  """Writes a labelled PNG grid and an .npz (`images` uint8 [num, 28, 28], `labels` [num])."""
  classes = options.labels or tuple(range(NUM_CLASSES))
  check_classes(classes, options.num_per_class)
  g_params = restore_generator(config, workdir)
  labels = generate.class_grid_labels(classes, options.num_per_class)
  images = generate.generate(config, g_params, labels, seed=options.seed)
  out = Path(options.out or workdir / 'samples' / 'sample.png')
  save_labelled_grid(images.reshape(len(classes), options.num_per_class, 28, 28),
                     [fashion_mnist.CLASS_NAMES[c] for c in classes], out)
  np.savez_compressed(out.with_suffix('.npz'), images=images, labels=labels)
  console.say(f'wrote {out} and {out.with_suffix(".npz")} ({len(labels)} images)')
