"""A champion trained on one log never judges a model trained on another (issue 25, point 5):
two generated logs trained into one store; `churn promote` refuses the comparison and says why,
and --model-name gives the second log a model (and a champion) of its own."""

from __future__ import annotations

import json

from mlflow import MlflowClient

from tests.helpers import WEAK_CONFIG, Trained, churn_env


def test_a_champion_trained_on_other_data_does_not_judge(tmp_path):
    (tmp_path / "weak.toml").write_text(WEAK_CONFIG)
    first = Trained(tmp_path, tmp_path / "demo", churn_env(tmp_path), {})
    mine = Trained(tmp_path, tmp_path / "mine", first.env, {})

    def train(t: Trained, *extra: str) -> dict:
        t.churn("generate", "--customers", "1500", "--seed", "11" if t is first else "12",
                "--out", str(t.data))
        proc = t.churn("train", "--customers", str(t.customers), "--events", str(t.events),
                       "--label", "explicit", "--horizon", "30", "--config", "weak.toml",
                       "--json", *extra)
        return json.loads(proc.stdout)

    demo = train(first)
    assert demo["aliases"] == ["champion"] and demo["champion_on_other_data"] is None
    own = train(mine)
    assert own["aliases"] == ["challenger"]
    assert own["champion_on_other_data"].startswith(
        f"churn's champion (version {demo['model_version']}) was trained on other data")

    gate = mine.churn("promote")
    line = gate.stdout.strip().splitlines()[-1]
    assert line.startswith(f"version {own['model_version']}: not promoted: not comparable: "
                           "champion was trained on other data"), gate.stdout
    assert str(demo["model_version"]) in line or "events.parquet" in line
    assert "--model-name" in line and "ROC-AUC" not in gate.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
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
