"""A campaign and MLflow: what the model version that chose the targets was trained with, and
the campaign's report logged beside that model's run."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from campaigns.report import CampaignReport
from campaigns.store import Campaign
from scoring.settings import Settings


@dataclass(frozen=True)
class ModelRun:
    """The run that logged a registered model version, and its training parameters."""

    run_id: str
    experiment_id: str
    params: dict[str, str]

    @property
    def activity_types(self) -> list[str]:
        """The activity types the model was trained with (a JSON list in its training params;
        absent from runs before they existed, which counted every event)."""
        try:
            found = json.loads(self.params.get("activity_types") or "[]")
        except ValueError:
            return []
        return [str(t) for t in found] if isinstance(found, list) else []


def model_run(settings: Settings, version: str) -> ModelRun | None:
    """The run of registered model version `version`, or None when the store does not know
    it."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from scoring.store import configure

    configure(settings)
    client = MlflowClient()
    try:
        mv = client.get_model_version(settings.model_name, version)
        run = client.get_run(mv.run_id)
        parent = run.data.tags.get("mlflow.parentRunId")
        params = client.get_run(parent).data.params if parent else run.data.params
    except MlflowException:
        return None
    return ModelRun(mv.run_id, run.info.experiment_id, dict(params))


def log_report(settings: Settings, campaign: Campaign, rep: CampaignReport) -> str | None:
    """Log the report to MLflow: one run per campaign, nested under the run that logged the
    model version which chose the targets (in its experiment), tagged with the campaign id and
    version. A later report of the same campaign logs to the same run (metrics at a new step,
    the report JSON replaced). Returns the run id, or None when MLflow does not know the
    version."""
    import mlflow
    from mlflow import MlflowClient

    trained = model_run(settings, campaign.model_version)
    if trained is None:
        return None
    client = MlflowClient()
    found = client.search_runs(
        [trained.experiment_id],
        filter_string=f"tags.`churn.campaign_id` = '{campaign.campaign_id}'", max_results=1)
    tags = {"churn.kind": "campaign", "churn.campaign_id": campaign.campaign_id,
            "churn.model_version": campaign.model_version, "mlflow.parentRunId": trained.run_id}
    step = rep.overall.treatment.known + rep.overall.control.known
    metrics = {"members_treatment": rep.overall.treatment.members,
               "members_control": rep.overall.control.members, "pending": rep.pending,
               "offers_cost": rep.money.cost}
    for key, e in (("uplift", rep.overall.uplift), ("save_rate", rep.overall.save_rate),
                   ("churn_treatment", rep.overall.treatment.churn),
                   ("churn_control", rep.overall.control.churn),
                   ("value_saved", rep.money.value_saved), ("net", rep.money.net)):
        if e.value is not None:
            metrics.update({key: e.value, f"{key}_low": e.low, f"{key}_high": e.high})
    metrics = {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
    kwargs = ({"run_id": found[0].info.run_id} if found else
              {"experiment_id": trained.experiment_id, "run_name": f"campaign {campaign.name}",
               "tags": tags})
    with mlflow.start_run(**kwargs) as run:
        if not found:
            mlflow.log_params({"campaign_id": campaign.campaign_id, "as_of": str(campaign.as_of),
                               "horizon_days": campaign.horizon_days,
                               "control_share": campaign.control_share, "seed": campaign.seed,
                               "cut": campaign.cut[:500], "level": rep.level})
        mlflow.log_metrics(metrics, step=step)
        mlflow.log_dict(rep.to_dict(), "campaign_report.json")
        return run.info.run_id
