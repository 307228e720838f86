"""docs/quickstart.ipynb: committed without outputs, and run top to bottom on the smoke configs.

Running it needs nbclient, nbformat and ipykernel (`pip install -r requirements-test.txt`) and
the real data sets (found as in conftest.py); without them the run is skipped, saying which.
"""

import ast
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import REAL_ROOT, REPO

NOTEBOOK = REPO / 'docs' / 'quickstart.ipynb'
_INSTALL = ('running the notebook needs nbclient, nbformat and ipykernel: '
            'pip install -r requirements-test.txt')


def test_committed_notebook_has_no_outputs_and_no_paths_of_this_machine():
  text = NOTEBOOK.read_text(encoding='utf-8')
  code = [cell for cell in json.loads(text)['cells'] if cell['cell_type'] == 'code']
  assert code and all(not c['outputs'] and c['execution_count'] is None for c in code), (
      'clear its outputs before committing (Jupyter: Edit > Clear Outputs of All Cells)')
  for path in {str(REPO), str(Path.home())} - {'/'}:
    assert path not in text


def _use_this_interpreter_as_python3(jupyter_dir: Path) -> None:
  """A 'python3' kernelspec running sys.executable, found before any the machine has."""
  spec = jupyter_dir / 'kernels' / 'python3'
  spec.mkdir(parents=True)
  (spec / 'kernel.json').write_text(json.dumps({
      'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      'display_name': 'Python 3', 'language': 'python'}))


def _outputs_of(nb, marker: str) -> list:
  """The outputs of the one code cell whose source contains `marker`."""
  (cell,) = [c for c in nb.cells if c.cell_type == 'code' and marker in c.source]
  return cell.outputs


def _stdout(outputs) -> str:
  return ''.join(o.text for o in outputs if o.output_type == 'stream' and o.name == 'stdout')


@pytest.mark.long
def test_notebook_runs_top_to_bottom_on_the_smoke_configs(tmp_path, monkeypatch):
  nbformat = pytest.importorskip('nbformat', reason=_INSTALL)
  nbclient = pytest.importorskip('nbclient', reason=_INSTALL)
  pytest.importorskip('ipykernel', reason=_INSTALL)
  if REAL_ROOT is None or not (REAL_ROOT / 'fashion_mnist').is_dir():
    pytest.skip('real data not found: set AML2_DATA_DIR to a data root with sms_spam/ and '
                'fashion_mnist/ (the notebook trains the smoke configs on them)')
  _use_this_interpreter_as_python3(tmp_path / 'jupyter')
  # The kernel inherits these (and JAX_PLATFORMS=cpu from conftest.py); it starts in tmp_path.
  monkeypatch.setenv('JUPYTER_PATH', str(tmp_path / 'jupyter'))
  monkeypatch.setenv('JUPYTER_RUNTIME_DIR', str(tmp_path / 'jupyter_runtime'))
  monkeypatch.setenv('IPYTHONDIR', str(tmp_path / 'ipython'))
  monkeypatch.setenv('TMPDIR', str(tmp_path))  # The notebook's scratch workdirs go here.
  monkeypatch.setenv('AML2_DATA_DIR', str(REAL_ROOT))
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join(
      p for p in (str(REPO), os.environ.get('PYTHONPATH', '')) if p))
  monkeypatch.delenv('MPLBACKEND', raising=False)  # The kernel's inline backend shows figures.

  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, kernel_name='python3', timeout=300,
                          resources={'metadata': {'path': str(tmp_path)}}).execute()

  # Empty workdirs: each experiment was trained into the notebook's scratch folder.
  (scratch,) = tmp_path.glob('aml2_quickstart_*')
  for name in ('cgan', 'spam_lstm', 'textgen_lstm'):
    assert list((scratch / name).rglob('checkpoints')), f'{name} was not trained in {scratch}'
  grid = _outputs_of(nb, 'generate.generate(')
  assert len([o for o in grid if 'image/png' in o.get('data', {})]) == 1
  spam = _outputs_of(nb, 'predict(')
  table = _stdout(spam).splitlines()
  is_spam = ast.literal_eval(spam[-1].data['text/plain'])
  assert table[0].split()[:2] == ['P(spam)', 'label'] and len(table) == 1 + len(is_spam) > 1
  assert [row.split()[1] == 'spam' for row in table[1:]] == is_spam
  assert _stdout(_outputs_of(nb, 'sample(')).startswith('Free ')
