"""The Colab notebooks in colabs/, each executed top to bottom in a fresh Jupyter kernel on CPU in its small
settings (`DARLING_NOTEBOOK_SMALL=1`); any cell that raises fails its test. Committed notebooks carry no outputs.

Each notebook writes into its own temporary folder (`DARLING_NOTEBOOK_WORKDIR`), so the notebooks run side by
side under pytest-xdist. The kernel is the running interpreter's ipykernel, started in colabs/ (the notebooks
find the checkout from there), with no hub access (`HF_HUB_OFFLINE=1`). The notebooks that read NoveltyBench's
labelled pairs from the shared data folder also run without it (`DARLING_DATA_DIR` an empty folder), as on a
Colab runtime: then the pairs written in the notebook stand in.
"""

import os
import pathlib
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

COLABS = pathlib.Path(__file__).resolve().parents[1] / "colabs"
NOTEBOOKS = ("00_sampling", "01_quickstart", "02_equivalence_classifier", "03_real_model", "04_scale_plan")
CELL_TIMEOUT_S = 300  # a small-settings cell takes under a minute on 2 busy CPU cores
SHARED_PAIRS = COLABS.parents[1] / "shared" / "data" / "noveltybench" / "classifier_train.jsonl"
READS_SHARED_PAIRS = ("02_equivalence_classifier", "03_real_model")
# (notebook, whether the shared data folder is hidden from it)
RUNS = [("00_sampling", False), ("01_quickstart", False), ("02_equivalence_classifier", False),
        ("02_equivalence_classifier", True), ("03_real_model", True), ("04_scale_plan", False)]


def read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(COLABS / f"{name}.ipynb", as_version=4)


def test_colabs_holds_exactly_the_tested_notebooks():
  assert sorted(path.stem for path in COLABS.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_valid_and_has_no_outputs(name):
  notebook = read(name)
  nbformat.validate(notebook)
  assert notebook.metadata.kernelspec.name == "python3"
  assert notebook.cells[0].cell_type == "markdown" and "arXiv 2509.02534" in notebook.cells[0].source
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  with_outputs = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
  assert not with_outputs, f"{name}: code cells {with_outputs} have outputs; clear them before committing"
  assert "DARLING_NOTEBOOK_SMALL" in "".join(cell.source for cell in code), f"{name} has no small-settings switch"


def kernel_manager() -> KernelManager:
  """A python3 kernel of this interpreter: no kernelspec directories are searched, so the native ipykernel
  (`sys.executable -m ipykernel_launcher`) is the one started, whatever kernels the machine has installed."""
  specs = KernelSpecManager(kernel_dirs=[], ensure_native_kernel=True)
  manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
  assert manager.kernel_spec.argv[0] == sys.executable, manager.kernel_spec.argv
  return manager


@pytest.mark.parametrize("name, without_data", RUNS,
                         ids=[f"{name}{'-without-shared-data' if hidden else ''}" for name, hidden in RUNS])
def test_notebook_runs_top_to_bottom_in_small_settings(name, without_data, tmp_path):
  notebook = read(name)
  env = dict(os.environ, DARLING_NOTEBOOK_SMALL="1", DARLING_NOTEBOOK_WORKDIR=str(tmp_path / "work"),
             HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
             JAX_PLATFORMS="cpu", MPLBACKEND="module://matplotlib_inline.backend_inline")
  env.pop("DARLING_CLASSIFIER_DIR", None)
  if without_data:
    (tmp_path / "no_data").mkdir()
    env["DARLING_DATA_DIR"] = str(tmp_path / "no_data")
  else:
    env.pop("DARLING_DATA_DIR", None)
  client = NotebookClient(notebook, km=kernel_manager(), timeout=CELL_TIMEOUT_S, allow_errors=False,
                          resources={"metadata": {"path": str(COLABS)}})
  client.execute(env=env)  # raises CellExecutionError (cell source and traceback) at the first failing cell
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.execution_count is not None for cell in code), f"{name}: some cells did not run"
  outputs = [output for cell in code for output in cell.outputs]
  assert not [output for output in outputs if output.output_type == "error"]
  assert any(output.get("data", {}).get("image/png") for output in outputs), f"{name} drew no figure"
  printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
  if without_data:
    assert "classifier_train.jsonl not found" in printed
  elif name in READS_SHARED_PAIRS and SHARED_PAIRS.is_file():
    assert f"NoveltyBench pairs from {SHARED_PAIRS}" in printed
