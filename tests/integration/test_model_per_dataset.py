"""A champion trained on one log never judges a model trained on another (issue 25, point 5):
the session's model and one trained on a second generated log in one store; `churn promote`
refuses the comparison and says why, and --model-name gives the second log a model (and a
champion) of its own."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from tests.helpers import WEAK_CONFIG, Trained, churn_env, copy_store


def test_a_champion_trained_on_other_data_does_not_judge(trained, tmp_path):
    # the first log's model is the session's, trained first into an empty store of its own
    assert trained.result["aliases"] == ["champion"]
    assert trained.result["champion_on_other_data"] is None
    copy_store(trained.home / "mlruns", tmp_path / "mlruns")  # its store, copied: ours to change
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    demo = {"model_version": str(client.get_model_version_by_alias("churn", "champion").version)}
    (tmp_path / "weak.toml").write_text(WEAK_CONFIG)
    mine = Trained(tmp_path, tmp_path / "mine", churn_env(tmp_path), {})
    mine.churn("generate", "--customers", "1500", "--seed", "12", "--out", str(mine.data))
    own = json.loads(mine.churn("train", "--customers", str(mine.customers), "--events",
                                str(mine.events), "--label", "explicit", "--horizon", "30",
                                "--config", "weak.toml", "--json").stdout)
    assert own["aliases"] == ["challenger"]
    assert own["champion_on_other_data"].startswith(
        f"churn's champion (version {demo['model_version']}) was trained on other data")

    gate = mine.churn("promote")
    line = gate.stdout.strip().splitlines()[-1]
    assert line.startswith(f"version {own['model_version']}: not promoted: not comparable: "
                           "champion was trained on other data"), gate.stdout
    assert str(demo["model_version"]) in line or "events.parquet" in line
    assert "--model-name" in line and "ROC-AUC" not in gate.stdout
    assert str(client.get_model_version_by_alias("churn", "champion").version) == str(demo["model_version"])

    # with a model of its own, the log's first model is that model's champion
    again = mine.churn("train", "--customers", str(mine.customers), "--events", str(mine.events),
                       "--label", "explicit", "--horizon", "30", "--config", "weak.toml",
                       "--json", "--model-name", "mine")
    ours = json.loads(again.stdout)
    assert ours["model_name"] == "mine" and ours["aliases"] == ["champion"]
    assert ours["champion_on_other_data"] is None
    decided = json.loads(mine.churn("promote", "--model-name", "mine", "--version",
                                    ours["model_version"], "--json").stdout)
    assert decided["reason"] == "the candidate is already champion"
