"""Joining a multi-process run (several hosts, or several processes on one host).

Every process runs the same command; `jax.distributed.initialize` connects them through a
coordinator (process 0's address), after which `jax.devices()` lists the devices of all
processes and the data-parallel mesh can span them. With no explicit address, JAX reads the
cluster's environment (SLURM, Open MPI, Cloud TPU, Kubernetes) as `jax.distributed.initialize()`
does. On CPU the processes exchange gradients through gloo collectives.
"""

import dataclasses
import socket
import time

import jax

from aml2_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Cluster:
  """How this process joins a multi-process run.

  Attributes:
    auto: read the coordinator, process count and id from the cluster environment.
    coordinator_address: 'host:port' of process 0's coordinator ('' = from the environment).
    num_processes: processes in the run (0 = from the environment).
    process_id: this process's index, in [0, num_processes).
    timeout_s: how long to wait for every process to connect before giving up.
  """
  auto: bool = False
  coordinator_address: str = ''
  num_processes: int = 0
  process_id: int = -1
  timeout_s: int = 60

  @property
  def explicit(self) -> bool:
    return bool(self.coordinator_address or self.num_processes or self.process_id >= 0)


def check(cluster: Cluster) -> None:
  """Refuses an incomplete or inconsistent explicit cluster description."""
  if not cluster.explicit:
    return
  if not (cluster.coordinator_address and cluster.num_processes > 0 and cluster.process_id >= 0):
    raise UserError('a multi-process run needs all of --coordinator_address=HOST:PORT, '
                    '--num_processes=N and --process_id=I (or --distributed to read them from '
                    'the cluster environment).')
  if not 0 <= cluster.process_id < cluster.num_processes:
    raise UserError(f'--process_id={cluster.process_id} is out of range for '
                    f'--num_processes={cluster.num_processes}; use 0 to '
                    f'{cluster.num_processes - 1}.')
  if cluster.timeout_s <= 0:
    raise UserError(f'--coordinator_timeout={cluster.timeout_s} must be > 0 seconds.')


def initialize(cluster: Cluster) -> None:
  """Joins the run described by `cluster`; does nothing for a single-process run.

  Must run before anything touches a JAX device.

  Raises:
    UserError: the description is incomplete, or the processes did not all connect in time.
  """
  check(cluster)
  if not (cluster.auto or cluster.explicit):
    return
  if cluster.explicit:
    rendezvous(cluster)
  # CPU processes need a collectives implementation to all-reduce across processes; GPU and TPU
  # backends ignore this option.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  kwargs = {'initialization_timeout': cluster.timeout_s}
  if cluster.explicit:
    kwargs.update(coordinator_address=cluster.coordinator_address,
                  num_processes=cluster.num_processes, process_id=cluster.process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except (RuntimeError, ValueError) as e:  # XlaRuntimeError is a RuntimeError.
    where = cluster.coordinator_address or 'the cluster environment\'s coordinator'
    first_line = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    raise UserError(f'could not join the multi-process run through {where} within '
                    f'{cluster.timeout_s} s ({first_line}); start every process with the same '
                    '--coordinator_address (process 0\'s host:port) and --num_processes, or '
                    'raise --coordinator_timeout.') from e


def rendezvous(cluster: Cluster) -> None:
  """Waits, at most `cluster.timeout_s`, until every process of the run has started.

  JAX's coordination client aborts the whole process (no Python exception) when the coordinator
  or a peer does not show up, so the processes first meet over a plain socket on the
  coordinator's port: process 0 listens, the others connect and say who they are, and when all
  have arrived process 0 answers each and frees the port for JAX's coordinator.

  Raises:
    UserError: the coordinator or a process did not show up in time.
  """
  host, _, port = cluster.coordinator_address.rpartition(':')
  if not host or not port.isdigit():
    raise UserError(f'--coordinator_address={cluster.coordinator_address} is not HOST:PORT.')
  deadline = time.monotonic() + cluster.timeout_s
  if cluster.process_id == 0:
    _gather(int(port), cluster.num_processes - 1, deadline, cluster)
  else:
    _check_in(host, int(port), cluster.process_id, deadline, cluster)


def _gather(port: int, expected: int, deadline: float, cluster: Cluster) -> None:
  """Process 0: accepts `expected` peers, then releases them all."""
  peers = []
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      server.bind(('', port))
    except OSError as e:
      raise UserError(f'cannot listen on port {port} for the multi-process run ({e.strerror}); '
                      'choose a free port in --coordinator_address.') from e
    server.listen(expected)
    try:
      while len(peers) < expected:
        server.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
          connection, _ = server.accept()
        except socket.timeout:
          raise UserError(f'only {len(peers) + 1} of {cluster.num_processes} processes started '
                          f'within {cluster.timeout_s} s; start every process with the same '
                          '--coordinator_address and --num_processes (or raise '
                          '--coordinator_timeout).') from None
        connection.settimeout(5)
        connection.recv(16)  # The peer's process id (for debugging; not checked).
        peers.append(connection)
      for connection in peers:
        connection.sendall(b'go')
    finally:
      for connection in peers:
        connection.close()


def _check_in(host: str, port: int, process_id: int, deadline: float, cluster: Cluster) -> None:
  """Process i > 0: connects to process 0 (retrying until the deadline) and waits for 'go'."""
  while True:
    try:
      with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(str(process_id).encode())
        connection.settimeout(max(deadline - time.monotonic(), 0.01))
        if connection.recv(2) == b'go':
          return
    except (OSError, socket.timeout):
      pass
    if time.monotonic() > deadline:
      raise UserError(f'no coordinator answered at {cluster.coordinator_address} within '
                      f'{cluster.timeout_s} s; start process 0 with the same '
                      '--coordinator_address, check the host and port, or raise '
                      '--coordinator_timeout.')
    time.sleep(0.2)
