"""`python -m aml2_jax.report`: the docs' tables and figures from `results/`.

  python -m aml2_jax.report            rewrite the tables of README.md and docs/*.md, draw
                                       docs/figures/*.png
  python -m aml2_jax.report --check    exit 1, one line per stale table, if any table differs
                                       from what results/ gives (writes nothing)
  python -m aml2_jax.report publish RUN_DIR results/<experiment>/<name>
                                       copy a finished run's small files into results/
  python -m aml2_jax.report record results/<experiment>/<name> -- python -m MODULE ...
                                       run a command and write its run.json there
"""

import argparse
import sys
from pathlib import Path

from aml2_jax.report import markers, publish, tables

REPO = Path(__file__).resolve().parents[2]


def renderer_for(root: Path):
  """`path -> (name -> block text or None)`: the blocks of one page (figure links are relative)."""

  def for_page(path: Path):
    page_dir = path.parent.relative_to(root)
    return lambda name: (tables.RENDERERS[name](root, page_dir) if name in tables.RENDERERS
                         else None)

  return for_page


def run_report(root: Path, check: bool) -> int:
  stale = markers.update(root, renderer_for(root), write=not check)
  unknown = [s for s in stale if s.unknown]
  if check:
    for s in stale:
      print(s.line(root), file=sys.stderr)
    return 1 if stale else 0
  from aml2_jax.report import figures  # pylint: disable=g-import-not-at-top  (draws: matplotlib)
  for s in unknown:
    print(s.line(root), file=sys.stderr)
  written = figures.draw_all(root)
  changed = sorted({s.path.relative_to(root).as_posix() for s in stale if not s.unknown})
  print(f'tables: {len(changed)} page(s) rewritten{": " if changed else ""}{", ".join(changed)}; '
        f'figures: {len(written)} in docs/figures/')
  return 1 if unknown else 0


def parse(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog='python -m aml2_jax.report', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--check', action='store_true',
                      help='report stale tables and exit 1 if any; write nothing')
  parser.add_argument('--root', type=Path, default=REPO,
                      help='repository root holding results/, README.md and docs/')
  parser.add_argument('--no-splits', dest='splits', action='store_false',
                      help="publish: leave out the seeds' split.json (a candidate run on the "
                           "same splits as its published baseline)")
  parser.add_argument('action', nargs='?', choices=('publish', 'record'),
                      help='publish RUN_DIR DEST, or record DEST -- python ...')
  parser.add_argument('paths', nargs='*', help='publish: RUN_DIR DEST; record: DEST -- COMMAND')
  return parser.parse_intermixed_args(argv)  # Flags may stand between the action and its paths.


def main(argv: list[str]) -> int:
  command = []
  if '--' in argv:  # `record DEST -- python ...`: what follows is the command, untouched.
    argv, command = argv[:argv.index('--')], argv[argv.index('--') + 1:]
  args = parse(argv)
  try:
    if args.action == 'publish':
      if len(args.paths) != 2:
        raise publish.PublishError('usage: python -m aml2_jax.report publish RUN_DIR '
                                   'results/<experiment>/<name>')
      print('\n'.join(publish.publish(*args.paths, splits=args.splits)))
      return 0
    if args.action == 'record':
      if len(args.paths) != 1 or not command:
        raise publish.PublishError('usage: python -m aml2_jax.report record DEST -- python ...')
      return publish.record(Path(args.paths[0]), command)
  except publish.PublishError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return run_report(args.root.resolve(), args.check)


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
