"""PyTorch and Keras 3 (JAX backend) peers of the project's five models, for side-by-side timing.

`python -m benchmarks.peers.run_peer --framework={torch,torch_compile,keras_jax} --model=NAME`
times one framework/model pair and prints one JSON line (see run_peer.py). The peers need
`pip install -r requirements-peers.txt`; nothing in aml2_jax imports them.
"""
