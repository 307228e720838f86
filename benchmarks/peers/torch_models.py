"""PyTorch peers of the five models and their train steps (eager, or with `torch.compile`).

Used by `python -m benchmarks.peers.run_peer --framework=torch|torch_compile --model=NAME`.
`build(name, compiled)` returns a `Peer`: `peer.step(*peer.batch)` runs one train step. Recurrent
layers are the fused nn.RNN / nn.LSTM kernels, with their second bias turned into a constant
zero so that the parameter counts are Keras' (one bias per gate), as in the project.

`torch.compile` (inductor, CPU) compiles the cGAN's two networks whole; of the recurrent models it
compiles the modules around nn.RNN / nn.LSTM, which dynamo does not trace (compiling the whole
model makes dynamo skip it: all eager). `torch._dynamo.config.allow_rnn = True` traced spam_rnn
in 162 s of compilation and made the step slower (16.6 vs about 10 ms, under load), so it is off.
The optimizers are the same fused / foreach kernels in both variants.

Timing on a busy machine: PyTorch's OpenMP threads spin-wait at every parallel region, and with
the cores taken by other processes a step can be 10-100x slower than on an idle machine (seen
here, for eager and compiled steps alike). `OMP_WAIT_POLICY=PASSIVE` in the environment avoided
most of that here; time on an idle machine with the defaults for figures to publish.
"""

import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.peers import specs

torch.set_num_threads(os.cpu_count() or 1)


@dataclass
class Peer:
  step: Callable  # step(*batch) -> loss tensor of the last update.
  batch: tuple
  num_params: int
  batch_size: int
  note: str = ''


def keras_bias(rnn: nn.RNNBase) -> nn.RNNBase:
  """Makes b_hh a zero buffer: the fused kernel still adds it, only b_ih is a trained bias.

  PyTorch keeps two biases per gate (b_ih + b_hh); Keras, the study and the project keep one.
  """
  for name in [n for n in rnn._flat_weights_names if n.startswith('bias_hh')]:
    zeros = torch.zeros_like(getattr(rnn, name)).detach()
    delattr(rnn, name)
    rnn.register_buffer(name, zeros)
  rnn._init_flat_weights()  # The kernel reads this list, not the attributes.
  return rnn


class OneHot(nn.Module):
  """The study fed one-hot characters (no embedding layer); so does this peer."""

  def __init__(self, depth: int):
    super().__init__()
    self.depth = depth

  def forward(self, ids):
    return F.one_hot(ids, self.depth).float()


class Recurrent(nn.Module):
  """ids -> embed -> recurrent layer -> its last output -> head.

  Three submodules, so that torch.compile can take the two around the recurrent layer: dynamo
  does not trace nn.RNN / nn.LSTM, and a compiled whole model falls back to eager entirely.
  """

  def __init__(self, embed: nn.Module, rnn: nn.RNNBase, head: nn.Module):
    super().__init__()
    self.embed, self.rnn, self.head = embed, keras_bias(rnn), head

  def forward(self, ids):
    out, _ = self.rnn(self.embed(ids))
    return self.head(out[:, -1])


def recurrent_model(name: str) -> Recurrent:
  if name.startswith('spam'):
    embed = nn.Embedding(specs.SPAM_VOCAB, specs.SPAM_EMBED)
    if name == 'spam_rnn':  # SimpleRNN(32) -> Dense(256, ReLU) -> Dropout(0.25) -> Dense(1).
      rnn = nn.RNN(specs.SPAM_EMBED, 32, batch_first=True)
      head = [nn.Linear(32, 256), nn.ReLU(), nn.Dropout(0.25), nn.Linear(256, 1)]
    else:  # LSTM(32) -> Dense(1).
      rnn, head = nn.LSTM(specs.SPAM_EMBED, 32, batch_first=True), [nn.Linear(32, 1)]
    return Recurrent(embed, rnn, nn.Sequential(*head, nn.Flatten(0)))  # One logit per example.
  if name == 'textgen_rnn':  # SimpleRNN(278) -> Dropout(0.2) -> Dense(117).
    rnn = nn.RNN(specs.CHARS, 278, batch_first=True)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(278, specs.CHARS))
  else:  # LSTM(128) -> Dense(117).
    rnn, head = nn.LSTM(specs.CHARS, 128, batch_first=True), nn.Linear(128, specs.CHARS)
  return Recurrent(OneHot(specs.CHARS), rnn, head)


def leaky_mlp(n_in: int, widths: tuple, dropout: float = 0.0) -> list:
  layers = []
  for width in widths:
    layers += [nn.Linear(n_in, width), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
    n_in = width
  return layers


class Generator(nn.Module):
  """noise(100) ⊕ label embedding(10) -> Dense 256, 512, 1024 (LeakyReLU 0.2) -> Dense 784, tanh."""

  def __init__(self):
    super().__init__()
    self.embed = nn.Embedding(specs.CLASSES, specs.LABEL_EMBED)
    self.net = nn.Sequential(*leaky_mlp(specs.NOISE + specs.LABEL_EMBED, specs.G_HIDDEN),
                             nn.Linear(specs.G_HIDDEN[-1], specs.IMAGE), nn.Tanh())

  def forward(self, z, labels):
    return self.net(torch.cat([z, self.embed(labels)], 1))


class Discriminator(nn.Module):
  """image(784) ⊕ label embedding(10) -> Dense 1024, 512, 256 (LeakyReLU 0.2, dropout 0.3) -> logit."""

  def __init__(self):
    super().__init__()
    self.embed = nn.Embedding(specs.CLASSES, specs.LABEL_EMBED)
    self.net = nn.Sequential(*leaky_mlp(specs.IMAGE + specs.LABEL_EMBED, specs.D_HIDDEN, 0.3),
                             nn.Linear(specs.D_HIDDEN[-1], 1))

  def forward(self, images, labels):
    return self.net(torch.cat([images, self.embed(labels)], 1)).squeeze(-1)


def count(*modules) -> int:
  return sum(p.numel() for m in modules for p in m.parameters())


def maybe_compile(module: nn.Module, compiled: bool) -> nn.Module:
  # dynamic=False: the cGAN's D sees batches of 128 and 64; one specialised graph each.
  return torch.compile(module, dynamic=False) if compiled else module


def adam(params, **kwargs) -> torch.optim.Adam:
  # fused: one C++ kernel per update on the CPU (cGAN step 49 -> 39 ms here, under load).
  # Compiling opt.step instead graph-breaks and recompiles per optimizer and was no faster.
  return torch.optim.Adam(params, fused=True, **kwargs)


def classifier(name: str, compiled: bool) -> Peer:
  model = recurrent_model(name)
  if name.startswith('spam'):
    opt = adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = F.binary_cross_entropy_with_logits
  else:
    # RMSprop has no fused kernel; foreach updates all tensors in one call.
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-7, foreach=True)
    loss_fn = F.cross_entropy
  if compiled:
    model.embed, model.head = maybe_compile(model.embed, True), maybe_compile(model.head, True)
  ids, targets = specs.make_batch(name)
  ids = torch.from_numpy(ids).long()  # Embedding and one_hot take int64.
  targets = torch.from_numpy(targets) if name.startswith('spam') else torch.from_numpy(targets).long()
  model.train()

  def step(ids, targets):
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(ids), targets)
    loss.backward()
    opt.step()
    return loss

  return Peer(step, (ids, targets), count(model), specs.BATCH_SIZES[name])


def cgan(compiled: bool) -> Peer:
  """D on real ⊕ generated images in one batch of 128, then G (non-saturating) against the new D."""
  b = specs.BATCH_SIZES['cgan']
  gen, disc = Generator(), Discriminator()
  g_opt = adam(gen.parameters(), lr=1e-4, betas=(0.5, 0.999))
  d_opt = adam(disc.parameters(), lr=1e-4, betas=(0.5, 0.999))
  g_fwd, d_fwd = maybe_compile(gen, compiled), maybe_compile(disc, compiled)
  real_fake_targets = torch.cat([torch.ones(b), torch.zeros(b)])
  ones = torch.ones(b)
  images, labels = (torch.from_numpy(a) for a in specs.make_batch('cgan'))
  labels = labels.long()

  def step(images, labels):
    fake_labels = torch.randint(0, specs.CLASSES, (b,))
    fake = g_fwd(torch.randn(b, specs.NOISE), fake_labels)  # One G forward serves both updates.
    d_logits = d_fwd(torch.cat([images, fake.detach()]), torch.cat([labels, fake_labels]))
    d_loss = F.binary_cross_entropy_with_logits(d_logits, real_fake_targets)
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    # G's update needs gradients through D, not of D's weights: skip computing those.
    disc.requires_grad_(False)
    g_loss = F.binary_cross_entropy_with_logits(d_fwd(fake, fake_labels), ones)
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()
    disc.requires_grad_(True)
    return g_loss

  return Peer(step, (images, labels), count(gen, disc), b)


def build(name: str, compiled: bool = False) -> Peer:
  torch.manual_seed(0)
  peer = cgan(compiled) if name == 'cgan' else classifier(name, compiled)
  if compiled and name != 'cgan':
    peer.note = 'embedding/one-hot and head compiled; nn.RNN/nn.LSTM eager (dynamo does not trace them)'
  return peer


def version() -> str:
  return f'torch {torch.__version__}'
