"""Edit a saved HF checkpoint in place, to build bad-input cases."""

import json

from safetensors.numpy import load_file, save_file


def edit_config(directory, **changes):
  config = json.loads((directory / "config.json").read_text())
  config.update(changes)
  (directory / "config.json").write_text(json.dumps(config))


def edit_tensors(directory, edit):
  tensors = load_file(str(directory / "model.safetensors"))
  edit(tensors)
  save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
