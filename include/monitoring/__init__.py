"""Monitoring what the endpoint sees: image and prediction statistics against the model's baseline."""
