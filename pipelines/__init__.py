"""The Kubeflow training pipeline: definition, compilation, local runs and submission."""
