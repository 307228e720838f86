"""The cGAN's losses: D's and G's for each `config.optim.loss` ('bce', the study's, or 'hinge';
formulas in docs/cgan.md), the R1 penalty on real images, and the auxiliary class loss."""

import jax
import jax.numpy as jnp
import optax

LOSSES = ('bce', 'hinge')


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       real_label: float, loss: str = 'bce') -> jax.Array:
  """D's loss over its logits [batch] of real and of generated images ('bce': one mean over both,
  target `real_label` for real images, 0 for generated; 'hinge': the sum of two means)."""
  if loss == 'hinge':
    return jax.nn.relu(1 - real_logits).mean() + jax.nn.relu(1 + fake_logits).mean()
  logits = jnp.concatenate([real_logits, fake_logits])
  targets = jnp.concatenate([jnp.full_like(real_logits, real_label, jnp.float32),
                             jnp.zeros_like(fake_logits, jnp.float32)])
  return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def generator_loss(fake_logits: jax.Array, loss: str = 'bce') -> jax.Array:
  """G's loss over D's logits [batch] of generated images.

  'bce' is the non-saturating mean -log D(G(z)): the minimax game's log(1 - D(G(z))) has a
  vanishing gradient when D rejects the samples confidently, early in training.
  """
  if loss == 'hinge':
    return -fake_logits.mean()
  return optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)).mean()


def r1_penalty(input_grads: jax.Array, weight: float) -> jax.Array:
  """R1 (Mescheder et al. 2018): weight / 2 * mean over images of |dD(x)/dx|^2, from the
  gradients [batch, pixels] of D's logit of each real image with respect to that image."""
  return 0.5 * weight * jnp.sum(jnp.square(input_grads), axis=-1).mean()


def split_logits(logits: jax.Array) -> tuple[jax.Array, jax.Array | None]:
  """(real/fake logits [batch], class logits [batch, 10] or None) of D's output."""
  return (logits, None) if logits.ndim == 1 else (logits[:, 0], logits[:, 1:])


def class_loss(class_logits: jax.Array, labels: jax.Array, weight: float) -> jax.Array:
  """`weight` x the mean cross-entropy of D's class logits [batch, 10] against `labels`."""
  return weight * optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()
