"""Experiment trackers (TensorBoard, MLflow, W&B) that mirror metrics.jsonl off the training step (docs/trackers.md)."""
