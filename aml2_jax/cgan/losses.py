"""The cGAN's losses: D's and G's for each `config.optim.loss`, and the R1 penalty on real images.

'bce': sigmoid cross-entropy for D, the non-saturating -log D(G(z)) for G (the study's).
'hinge': D minimises mean relu(1 - D(x)) + mean relu(1 + D(G(z))), G maximises mean D(G(z))
(Lim & Ye 2017; Miyato et al. 2018): D stops pushing on images it already scores beyond the margin.
"""

import jax
import jax.numpy as jnp
import optax

LOSSES = ('bce', 'hinge')


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array,
                       real_label: float, loss: str = 'bce') -> jax.Array:
  """D's loss over its logits [batch] of real and of generated images.

  'bce': the mean sigmoid cross-entropy over both sets together (target `real_label` for real
  images: 1, or e.g. 0.9 for one-sided label smoothing; 0 for generated ones). 'hinge': the sum
  of the two sets' mean hinge terms (`real_label` does not apply).
  """
  if loss == 'hinge':
    return jax.nn.relu(1 - real_logits).mean() + jax.nn.relu(1 + fake_logits).mean()
  logits = jnp.concatenate([real_logits, fake_logits])
  targets = jnp.concatenate([jnp.full_like(real_logits, real_label, jnp.float32),
                             jnp.zeros_like(fake_logits, jnp.float32)])
  return optax.sigmoid_binary_cross_entropy(logits, targets).mean()


def generator_loss(fake_logits: jax.Array, loss: str = 'bce') -> jax.Array:
  """G's loss over D's logits [batch] of generated images.

  'bce' is the non-saturating mean -log D(G(z)), not the saturating log(1 - D(G(z))) of the
  minimax game, whose gradient vanishes when D rejects the samples confidently, early in
  training. 'hinge': -mean D(G(z)).
  """
  if loss == 'hinge':
    return -fake_logits.mean()
  return optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits)).mean()


def r1_penalty(input_grads: jax.Array, weight: float) -> jax.Array:
  """R1 (Mescheder et al. 2018): weight / 2 * mean over images of |dD(x)/dx|^2.

  Args:
    input_grads: [batch, pixels] the gradient of D's logit of each real image wrt that image.
    weight: gamma, the penalty's weight.
  """
  return 0.5 * weight * jnp.sum(jnp.square(input_grads), axis=-1).mean()
