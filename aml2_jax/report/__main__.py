"""`python -m aml2_jax.report`: the docs' tables and figures from `results/`.

  python -m aml2_jax.report          rewrite README.md's and docs/*.md's `<!-- report:NAME -->`
                                     blocks, draw docs/figures/*.png
  python -m aml2_jax.report --check  exit 1, a line per block that differs from results/
  python -m aml2_jax.report publish RUN_DIR results/<experiment>/<name> [--role=...]
  python -m aml2_jax.report record DEST -- python -m MODULE ...   (see publish.py)
"""

import argparse
import functools
import re
import sys
from pathlib import Path

from aml2_jax import jsonio
from aml2_jax.errors import UserError
from aml2_jax.report import figures, publish, tables
from aml2_jax.report.runs import Results

RENDERERS = {**tables.RENDERERS, **figures.RENDERERS}
BLOCK = re.compile(r'(<!-- report:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)'
                   r'(<!-- /report:(?P=name) -->)', re.DOTALL)


def _render(results: Results, page: str, stale: list, match: re.Match) -> str:
  """A block re-rendered; a stale block, or an unknown marker, is added to `stale`."""
  if (name := match['name']) not in RENDERERS:
    stale.append((page, name, True))
    return match[0]
  body = RENDERERS[name](results, Path(page).parent).rstrip('\n') + '\n'
  stale.extend([(page, name, False)] if body != match['body'] else [])
  return match[1] + body + match[4]


def run_report(root: Path, check: bool) -> int:
  """Re-renders the blocks of the pages; unless `check`, writes them and draws the figures."""
  results, stale = Results.load(root), []
  for path in [root / 'README.md', *sorted(root.glob('docs/*.md'))]:
    text = path.read_text(encoding='utf-8') if path.is_file() else ''
    page = path.relative_to(root).as_posix()
    new = BLOCK.sub(functools.partial(_render, results, page, stale), text)
    if new != text and not check:
      jsonio.atomic_write_text(path, new)
  for page, name, unknown in stale:
    if check or unknown:
      print(f'{page}: marker report:{name} names no table the report knows.' if unknown else
            f'{page}: table report:{name} differs from results/; run: python -m aml2_jax.report',
            file=sys.stderr)
  if check:
    return 1 if stale else 0
  written = figures.draw_all(results)
  changed = sorted({page for page, _, unknown in stale if not unknown})
  print(f'tables: {len(changed)} page(s) rewritten{": " if changed else ""}{", ".join(changed)}; '
        f'figures: {len(written)} in docs/figures/')
  return 1 if any(unknown for *_, unknown in stale) else 0


def main(argv: list[str]) -> int:
  command = []
  if '--' in argv:  # `record DEST -- python ...`: what follows is the command, untouched.
    argv, command = argv[:argv.index('--')], argv[argv.index('--') + 1:]
  parser = argparse.ArgumentParser(prog='python -m aml2_jax.report', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--check', action='store_true', help='report stale tables; write nothing')
  parser.add_argument('--root', type=Path, default=Path(__file__).resolve().parents[2],
                      help='repository root holding results/, README.md and docs/')
  parser.add_argument('--no-splits', dest='splits', action='store_false',
                      help="publish: leave out the seeds' split.json (a candidate run on the "
                           'same splits as its published baseline)')
  parser.add_argument('--role', dest='roles', action='append', help='publish: a role (repeatable)')
  for flag, what in (('label', "the run's name, e.g. LSTM"), ('setting', 'e.g. all_chars'),
                     ('order', 'its place in its role'), ('baseline', 'e.g. spam/rnn_study')):
    parser.add_argument(f'--{flag}', type=int if flag == 'order' else str, help=f'publish: {what}')
  parser.add_argument('action', nargs='?', choices=('publish', 'record'))
  parser.add_argument('paths', nargs='*', help='publish: RUN_DIR DEST; record: DEST')
  args = parser.parse_intermixed_args(argv)  # Flags may stand between the action and its paths.
  try:
    if args.action == 'publish' and len(args.paths) == 2:
      print('\n'.join(publish.publish(*map(Path, args.paths), splits=args.splits,
                                      roles=args.roles, label=args.label, setting=args.setting,
                                      order=args.order, baseline=args.baseline)))
      return 0
    if args.action == 'record' and len(args.paths) == 1 and command:
      return publish.record(Path(args.paths[0]), command)
    if args.action:
      raise UserError('usage: python -m aml2_jax.report publish RUN_DIR '
                      'results/<experiment>/<name>, or record DEST -- python ...')
  except UserError as e:  # One line, no traceback.
    print(f'error: {e}', file=sys.stderr)
    return 2
  return run_report(args.root.resolve(), args.check)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
