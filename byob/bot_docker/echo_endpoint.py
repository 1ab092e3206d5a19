"""A stand-in model endpoint for the template: replace predict_fn with your model.

Handler functions follow SageMaker's inference contract: model_fn(model_dir) loads the model
from model_s3_path unpacked into model_dir; predict_fn(data, model) answers one request.
"""


def model_fn(model_dir):
    return {"small": 1024}


def predict_fn(data, model):
    return {"kind": "small" if data["size"] < model["small"] else "large", "size": data["size"]}
