"""Loading a config file of `configs/` from code (as the launcher does from the command line)."""

import importlib.util
from pathlib import Path

import ml_collections

CONFIG_DIR = Path(__file__).resolve().parent.parent / 'configs'


def load_config(name: str, variant: str = '') -> ml_collections.ConfigDict:
  """`get_config(variant)` of `configs/<name>.py`."""
  spec = importlib.util.spec_from_file_location(f'configs.{name}', CONFIG_DIR / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(variant)
