"""The model server: predict over HTTP and capture every accepted row into the landing zone.

Run one replica with ``python -m serving``; build the app in-process with
``create_app(ServingSettings(...))``. Depends on ``ingest`` only.
"""

from serving.app import create_app
from serving.capture import Capture
from serving.loading import load_predictor, train_default_model
from serving.metrics import ServingMetrics
from serving.model import Prediction, Predictor
from serving.request import InvalidRequest, PredictionRequest, RequestParser
from serving.settings import ServingSettings

__all__ = [
    "Capture",
    "InvalidRequest",
    "Prediction",
    "PredictionRequest",
    "Predictor",
    "RequestParser",
    "ServingMetrics",
    "ServingSettings",
    "create_app",
    "load_predictor",
    "train_default_model",
]
