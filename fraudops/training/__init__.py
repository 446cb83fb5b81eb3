"""Training, evaluation, MLflow registry and promotion: shared by the CLI, kfp and triggers.

Importing this package loads nothing heavy; import the submodules you need
(`fraudops.training.retrain.run_training` for the whole flow).
"""
