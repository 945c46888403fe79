"""Inference: sliding-window prediction (:mod:`.predictor`), output files (:mod:`.outputs`), the API (:mod:`.api`)."""

from mome.inference.api import PredictionResult, make_predictor, output_paths, predict, predict_to_files
from mome.inference.predictor import Prediction, Predictor, resolve_device

__all__ = [
    "Prediction", "PredictionResult", "Predictor", "make_predictor", "output_paths", "predict",
    "predict_to_files", "resolve_device",
]
