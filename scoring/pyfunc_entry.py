"""MLflow models-from-code entry: the logged model is this file plus its artifacts."""

import mlflow

from serving.model import ChurnPyfunc

mlflow.models.set_model(ChurnPyfunc())
