"""The cheap commands of README.md and docs/*.md run as written: docs cannot drift from the code.

A command is cheap, and run here, when it contains one of `CHEAP`: smoke configs, `--help`,
`--mode=summary`, the report's check. Training runs, publishing and installs are left to the
user. Workdirs go to a temporary folder, and the data are the suite's tiny data sets.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

CHEAP = (':smoke', '--help', '--mode=summary', 'aml2_jax.report --check')
FENCED = re.compile(r'```[a-z]*\n(.*?)```', re.DOTALL)
INLINE = re.compile(r'`(python [^`\n]+)`')


def _lines(block: str) -> list[str]:
  """The command lines of a shell block: continuations joined, comments dropped."""
  joined = re.sub(r'\\\n\s*', ' ', block)
  commands = []
  for line in joined.splitlines():
    try:
      words = shlex.split(line, comments=True)
    except ValueError:  # Not shell (a layout tree, say).
      continue
    if words[:1] == ['python']:
      commands.append(shlex.join(words))
  return commands


def documented_commands() -> list[str]:
  """Every cheap `python ...` command of the docs, once, in a fixed order."""
  found = []
  for page in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
    text = page.read_text(encoding='utf-8')
    candidates = [c for block in FENCED.findall(text) for c in _lines(block)]
    candidates += INLINE.findall(FENCED.sub('', text))
    for command in candidates:
      placeholder = any(mark in command for mark in ('<', '[', '...'))
      if any(mark in command for mark in CHEAP) and not placeholder and command not in found:
        found.append(command)
  return found


COMMANDS = documented_commands()


def test_the_docs_have_cheap_commands_to_run():
  assert any(':smoke' in c for c in COMMANDS) and any('--mode=summary' in c for c in COMMANDS)
  assert 'python -m aml2_jax.report --check' in COMMANDS


@pytest.fixture(name='data_root', scope='module')
def fixture_data_root(tmp_path_factory, tiny_fmnist_root, tiny_sms_root) -> Path:
  """One data root holding the suite's tiny Fashion-MNIST and SMS corpus."""
  root = tmp_path_factory.mktemp('data_root')
  (root / 'fashion_mnist').symlink_to(tiny_fmnist_root / 'fashion_mnist')
  (root / 'sms_spam').symlink_to(tiny_sms_root / 'sms_spam')
  return root


@pytest.mark.long
@pytest.mark.parametrize('command', COMMANDS)
def test_documented_command_runs(command, tmp_path, data_root):
  words = shlex.split(command)
  if any(w.startswith('--workdir=') for w in words) or ':smoke' in command:
    words = [w for w in words if not w.startswith('--workdir=')]
    words.append(f'--workdir={tmp_path / "workdir"}')
  env = {**os.environ, 'AML2_DATA_DIR': str(data_root)}
  done = subprocess.run([sys.executable, *words[1:]], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300, check=False)
  assert done.returncode == 0, (f'the documented command `{command}` failed; fix the docs or '
                                f'the code:\n{done.stderr[-3000:]}')


def test_every_test_the_docs_name_exists():
  """`test_x.py::test_name` (or `::test_name`, in the file last named) in a page is a real test."""
  reference = re.compile(r'`(?:tests/)?(test_\w+\.py)?::(test_\w+)')
  missing = []
  for page in [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]:
    current = None
    for match in reference.finditer(page.read_text()):
      current = match.group(1) or current
      source = (REPO / 'tests' / current).read_text() if current else ''
      if not re.search(rf'^def {match.group(2)}\(', source, re.MULTILINE):
        missing.append(f'{page.name}: {current}::{match.group(2)}')
  assert not missing, f'pages name tests that do not exist: {missing}'
