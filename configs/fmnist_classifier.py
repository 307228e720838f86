"""Fashion-MNIST CNN classifier: the judge of the cGAN's images (conditional accuracy, FID, CAS).

Run:      python launch.py --config=configs/fmnist_classifier.py
Expect:   test accuracy >= 92% after 5 epochs (92.13% measured); on an idle 2-core CPU about
          2-3 minutes (an estimate: about a third of the former 10-epoch recipe's time, measured
          side by side on a busy machine; docs/performance.md).
          The cGAN trains it as the first step of its first run; docs/cgan.md has the figures.
Recipe:   compared on held-out training images (docs/cgan.md: how the epochs were picked):
          python launch.py --config=configs/fmnist_classifier.py --config.data.val_size=10000
Smoke:    python launch.py --config=configs/fmnist_classifier.py:smoke --workdir=/tmp/clf
"""

from aml2_jax.training.config import base_config


def get_config(variant: str = ''):
  config = base_config('fmnist_classifier')
  config.num_epochs = 5
  config.batch_size = 128
  # On CPU the convolutions are im2col matmuls (model.ops), which run at full speed in a scan.
  config.backend_defaults.steps_per_call.update(cpu=16, gpu=16, tpu=16)
  config.model = dict(
      channels=(32, 64),  # Output channels of the two 3x3 conv + 2x2 max-pool blocks.
      feature_dim=128,  # Width of the penultimate layer: the feature space of the project's FID.
      dropout=0.3,  # Dropout after the feature layer (training only).
      ops='auto',  # 'auto' | 'fast' | 'plain': CPU fast paths (aml2_jax/layers/fast_ops.py).
  )
  config.optim = dict(
      learning_rate=2e-3,  # Adam's peak rate.
      warmup_fraction=0.1,  # Share of the run's steps warming up from 0; then a cosine to 0.
  )
  config.data.limit = 0  # Use only the first N train/test images (0 = all); for smoke runs.
  # Training images held out (stratified) and scored every epoch, to choose the recipe on them
  # rather than on the test set; 0 = train on all 60,000 (the judge).
  config.data.val_size = 0
  config.data.split_seed = 0  # Seeds the choice of the held-out images.
  if variant == 'smoke':
    config.num_epochs = 1
    config.batch_size = 32
    config.data.limit = 512
  elif variant:
    raise ValueError(f'unknown variant {variant!r}; use "smoke" or none')
  return config
