"""MLflow models-from-code entry: the logged model is this file plus its artifacts."""

import mlflow

from scoring.artifact import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
