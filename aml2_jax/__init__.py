"""aml2_jax: SMS spam classifier, SMS character generator and Fashion-MNIST cGAN in JAX/Flax."""
