"""Kubeflow Pipelines components of the training pipeline (thin typed wrappers)."""
