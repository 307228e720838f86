"""Joining a multi-process run: every process runs the same command, then `jax.devices()` lists
the devices of all of them (gloo collectives on CPU). The protocol: docs/reliability.md."""

import dataclasses
import socket
import time

import jax

from aml2_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class Cluster:
  """How this process joins a multi-process run (the launcher's flags)."""
  auto: bool = False  # Read the coordinator, process count and id from the cluster environment.
  coordinator_address: str = ''  # 'host:port' of process 0's coordinator.
  num_processes: int = 0
  process_id: int = -1  # In [0, num_processes).
  timeout_s: int = 60  # How long to wait for every process to connect.

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
  """Joins the run described by `cluster` (nothing for one process); before any device use."""
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
  """Waits until every process has started, at most `cluster.timeout_s`, over a plain socket.

  JAX's coordination client aborts the process (no exception) when a peer never shows up.
  """
  host, _, port = cluster.coordinator_address.rpartition(':')
  if not host or not port.isdigit():
    raise UserError(f'--coordinator_address={cluster.coordinator_address} is not HOST:PORT.')
  deadline = time.monotonic() + cluster.timeout_s
  if cluster.process_id == 0:
    _gather(int(port), deadline, cluster)
  else:
    _check_in(host, int(port), deadline, cluster)


def _gather(port: int, deadline: float, cluster: Cluster) -> None:
  """Process 0: accepts the other processes, then releases them all (and frees the port)."""
  peers = []
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      server.bind(('', port))
    except OSError as e:
      raise UserError(f'cannot listen on port {port} for the multi-process run ({e.strerror}); '
                      'choose a free port in --coordinator_address.') from e
    server.listen(cluster.num_processes - 1)
    try:
      while len(peers) < cluster.num_processes - 1:
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


def _check_in(host: str, port: int, deadline: float, cluster: Cluster) -> None:
  """Process i > 0: connects to process 0 (retrying until the deadline) and waits for 'go'."""
  while True:
    try:
      with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(str(cluster.process_id).encode())
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
