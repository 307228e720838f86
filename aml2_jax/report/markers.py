"""Generated blocks in Markdown pages: `<!-- report:NAME -->` ... `<!-- /report:NAME -->`."""

import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Callable

BLOCK = re.compile(r'(<!-- report:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)'
                   r'(<!-- /report:(?P=name) -->)', re.DOTALL)
PAGES = ('README.md', 'docs/*.md')  # The files whose blocks are generated.


@dataclasses.dataclass(frozen=True)
class Stale:
  """A block of `path` whose text differs from what the files give (or that has no renderer)."""
  path: Path
  name: str
  unknown: bool = False

  def line(self, root: Path) -> str:
    where = self.path.relative_to(root).as_posix()
    if self.unknown:
      return f'{where}: marker report:{self.name} names no table the report knows.'
    return (f'{where}: table report:{self.name} differs from results/; run: '
            'python -m aml2_jax.report')


def pages(root: Path) -> list[Path]:
  """README.md and docs/*.md under `root`, those that exist, in a fixed order."""
  found = []
  for pattern in PAGES:
    found += sorted(Path(root).glob(pattern))
  return found


def render_page(text: str, render: Callable[[str], str | None]) -> tuple[str, list[str], list[str]]:
  """`text` with every block re-rendered; also the names that changed and the unknown names.

  `render(name)` gives a block's body (without the final newline), or None for an unknown name.
  """
  changed, unknown = [], []

  def replace(match: re.Match) -> str:
    name = match['name']
    body = render(name)
    if body is None:
      unknown.append(name)
      return match[0]
    body = body.rstrip('\n') + '\n'
    if body != match['body']:
      changed.append(name)
    return match[1] + body + match[4]

  return BLOCK.sub(replace, text), changed, unknown


def atomic_write(path: Path, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename (never a half-written page)."""
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.')
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    Path(tmp).unlink(missing_ok=True)
    raise


def update(root: Path, render_for: Callable[[Path], Callable[[str], str | None]],
           write: bool) -> list[Stale]:
  """Re-renders the blocks of every page; writes the pages that changed when `write`.

  Returns the stale blocks (before writing) and the unknown markers.
  """
  stale = []
  for path in pages(root):
    text = path.read_text(encoding='utf-8')
    new, changed, unknown = render_page(text, render_for(path))
    stale += [Stale(path, name) for name in changed]
    stale += [Stale(path, name, unknown=True) for name in unknown]
    if write and new != text:
      atomic_write(path, new)
  return stale
