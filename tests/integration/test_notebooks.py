"""Both notebooks run top to bottom, in order, on small generated data in one CHURN_HOME.

The kernel is this interpreter: a `python3` kernelspec is installed into a temporary prefix
whose argv is `sys.executable`, and JUPYTER_PATH points there, so nothing is registered
globally and no other Python on the machine can be picked up."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import mlflow
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from mlflow import MlflowClient
from nbclient import NotebookClient

from training.explore import sample_data

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
ORDER = ("01-explore-and-train.ipynb", "02-review-explanations.ipynb")
CELL_TIMEOUT_S = 600
RUN_ID = re.compile(r"\brun ([0-9a-f]{32})\b")
# what the figures are: 01 churn rates, warning signs, calibration, lift; 02 three waterfalls,
# the beeswarm and the profit curve. Twice as many would be each figure shown twice.
FIGURES = {ORDER[0]: 4, ORDER[1]: 5}
# noise in outputs: warnings (tqdm's, Python's), MLflow's INFO lines and progress bars
NOISE = re.compile(r"Warning|WARNING|\bINFO\b|tqdm|IProgress|Downloading artifacts|"
                   r"Successfully registered|Created version")
NOTEBOOK_MODEL = "churn-notebook"
# the offer settings notebook 02 runs under, unlike the default the champion was trained with
OTHER_OFFER_COST = "99"
OWN_CUSTOMERS = 2000  # notebook 01's own log; the generated default has 3,000


def _kernel_env(tmp: Path, home: Path) -> dict[str, str]:
    from ipykernel.kernelspec import install

    install(kernel_name="python3", prefix=str(tmp / "jupyter"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(
        CHURN_HOME=str(home),
        CHURN_NOTEBOOK_DATA=str(home / "data"),
        CHURN_NOTEBOOK_CUSTOMERS="3000",
        MLFLOW_DISABLE_TELEMETRY="true",
        JUPYTER_PATH=str(tmp / "jupyter" / "share" / "jupyter"),
        JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
    )
    return env


def _outputs(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(nb))


def _text(nb: nbformat.NotebookNode) -> str:
    parts = [o.get("text", "") for o in _outputs(nb) if o.output_type == "stream"]
    parts += [o.get("data", {}).get("text/plain", "") for o in _outputs(nb)]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> tuple[Path, dict[str, nbformat.NotebookNode]]:
    """Execute copies of both notebooks in order; the committed files stay untouched."""
    tmp = tmp_path_factory.mktemp("notebooks")
    home = tmp / "home"
    home.mkdir()
    env = _kernel_env(tmp, home)
    done: dict[str, nbformat.NotebookNode] = {}
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(("MLFLOW_", "CHURN_"))]:
            mp.delenv(key)
        for key, value in env.items():
            mp.setenv(key, value)
        spec = KernelSpecManager().get_kernel_spec("python3")
        assert spec.argv[0] == sys.executable, f"kernel would run {spec.argv[0]}"
        # 01 runs on a log of the user's own (its two paths), 02 on the generated default
        own = sample_data(home / "own", OWN_CUSTOMERS, seed=5)
        mp.setenv("CHURN_NOTEBOOK_CUSTOMERS_PATH", str(own[0]))
        mp.setenv("CHURN_NOTEBOOK_EVENTS_PATH", str(own[1]))
        for name in ORDER:
            if name == ORDER[1]:  # today's offer differs from the champion's (the default)
                mp.setenv("CHURN_OFFER__COST", OTHER_OFFER_COST)
                mp.delenv("CHURN_NOTEBOOK_CUSTOMERS_PATH")
                mp.delenv("CHURN_NOTEBOOK_EVENTS_PATH")
            nb = nbformat.read(NOTEBOOKS / name, as_version=4)
            # which interpreter really ran the cells, checked below
            nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
            NotebookClient(
                nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, startup_timeout=120,
                resources={"metadata": {"path": str(home)}},
            ).execute()
            done[name] = nb
    return home, done


@pytest.mark.parametrize("name", ORDER)
def test_notebook_runs_without_errors_in_this_venv(executed, name):
    _, done = executed
    nb = done[name]
    errors = [o for o in _outputs(nb) if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    last = nb.cells[-1].outputs[0]["text"].strip()
    assert Path(last) == Path(sys.executable)


@pytest.mark.parametrize("name", ORDER)
def test_every_figure_is_shown_once(executed, name):
    _, done = executed
    nb = done[name]
    assert _images(nb) == FIGURES[name]
    pngs = [o["data"]["image/png"] for o in _outputs(nb) if "image/png" in o.get("data", {})]
    assert len({hashlib.sha256(p.encode()).hexdigest() for p in pngs}) == len(pngs)


@pytest.mark.parametrize("name", ORDER)
def test_outputs_hold_no_warnings_or_logging_noise(executed, name):
    _, done = executed
    nb = done[name]
    stderr = [o.text for o in _outputs(nb) if o.output_type == "stream" and o.name == "stderr"]
    assert not stderr, f"{name} wrote to stderr: {stderr[0][:300]}"
    noise = NOISE.search(_text(nb))
    assert noise is None, f"{name}: {_text(nb)[max(0, noise.start() - 100):noise.end() + 200]}"


def test_explore_and_train_shows_plots_and_a_logged_run(executed):
    home, done = executed
    nb = done[ORDER[0]]
    found = RUN_ID.findall(_text(nb))
    assert found, "notebook 01 printed no run id"
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(found[0])
    assert run.info.status == "FINISHED" and run.info.run_name.endswith("notebook-fast")
    # its own model and experiment: the CLI's `churn` is never created or touched
    assert [m.name for m in client.search_registered_models()] == [NOTEBOOK_MODEL]
    assert client.get_experiment(run.info.experiment_id).name == NOTEBOOK_MODEL
    assert client.get_experiment_by_name("churn") is None
    # trained on the files it was given, not on generated data
    assert f"{OWN_CUSTOMERS:,} customers" in _text(nb)
    dataset = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="dataset.json", tracking_uri=uri)).read_text())
    assert Path(dataset["customers_file"]) == home / "own" / "customers.parquet"
    assert Path(dataset["events_file"]) == home / "own" / "events.parquet"


def test_review_runs_on_generated_data_by_default(executed):
    home, done = executed
    assert "3,000 customers" in _text(done[ORDER[1]])
    assert (home / "data" / "customers.parquet").exists()


def test_review_shows_waterfalls_summary_and_campaign(executed):
    _, done = executed
    nb = done[ORDER[1]]
    text = _text(nb)
    assert f"champion: {NOTEBOOK_MODEL} version 1" in text
    assert "best_k" in text
    # the campaign uses the offer the champion was trained with, not today's settings
    assert "offer: cost=10.0 " in text and f"cost={OTHER_OFFER_COST}" not in text


@pytest.mark.parametrize("name", ORDER)
def test_committed_notebook_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert nb.metadata.kernelspec.name == "python3"
