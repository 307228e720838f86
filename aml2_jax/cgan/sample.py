"""`--mode=sample`: a labelled PNG grid and an .npz of generated images from a trained workdir."""

import errno
from pathlib import Path

import numpy as np

from aml2_jax import console
from aml2_jax.cgan import generate
from aml2_jax.cgan.models import NUM_CLASSES
from aml2_jax.cgan.train import restore_generator
from aml2_jax.datasets import fashion_mnist
from aml2_jax.errors import UserError
from aml2_jax.plotting.image_grid import save_labelled_grid
from aml2_jax.runtime import storage

def check_classes(classes: tuple[int, ...], num_per_class: int) -> None:
  """Refuses unknown labels and a non-positive count, naming the valid ones."""
  unknown = [c for c in classes if not 0 <= c < NUM_CLASSES]
  if unknown:
    names = ', '.join(f'{i} {n}' for i, n in enumerate(fashion_mnist.CLASS_NAMES))
    raise UserError(f'--labels has unknown classes {unknown}; Fashion-MNIST labels are 0-9 '
                    f'({names}).')
  if num_per_class <= 0:
    raise UserError(f'--num_per_class={num_per_class} must be > 0.')


def output_paths(out: str, workdir: Path) -> tuple[Path, Path]:
  """(PNG path, NPZ path) for `--out` (either suffix; default `<workdir>/samples/sample.png`),
  after checking that their folder can be written (created if missing)."""
  path = Path(out).expanduser() if out else Path(workdir) / 'samples' / 'sample.png'
  if path.suffix.lower() not in ('.png', '.npz'):  # Either names both, written side by side.
    raise UserError(f'--out={out} must end in .png or .npz: both are written, the labelled grid '
                    f'as {path.stem}.png and the images and labels as {path.stem}.npz.')
  folder = path.absolute().parent
  if folder.exists() and not folder.is_dir():
    raise storage.StorageError(folder, errno.ENOTDIR, where='--out')
  with storage.writing(folder, '--out'):
    folder.mkdir(parents=True, exist_ok=True)
  storage.probe_writable(folder, '--out')  # Before the restore and the generation, not after.
  return path.with_suffix('.png'), path.with_suffix('.npz')


def sample(config, workdir: Path, options) -> None:
  """Writes a labelled PNG grid and an .npz (`images` uint8 [num, 28, 28], `labels` [num])."""
  classes = options.labels or tuple(range(NUM_CLASSES))
  check_classes(classes, options.num_per_class)
  png, npz = output_paths(options.out, workdir)
  g_params = restore_generator(config, workdir)
  labels = generate.class_grid_labels(classes, options.num_per_class)
  images = generate.generate(config, g_params, labels, seed=options.seed)
  save_labelled_grid(images.reshape(len(classes), options.num_per_class, 28, 28),
                     [fashion_mnist.CLASS_NAMES[c] for c in classes], png, where='--out')

  def write_npz(tmp: Path) -> None:
    with open(tmp, 'wb') as f:  # A file object: np.savez would append .npz to a name.
      np.savez_compressed(f, images=images, labels=labels)

  storage.atomic_save(npz, write_npz, '--out')
  console.say(f'wrote {png} and {npz} ({len(labels)} images)')
