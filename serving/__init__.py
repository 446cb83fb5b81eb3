"""Serving unit: the KServe predictor (`fraud-scorer`) and the FastAPI gateway.

Two processes, one package: ``fraudops serve predictor`` runs `serving.predictor` under
`kserve.ModelServer`; ``fraudops serve gateway`` runs the app from `serving.gateway.app`.
"""
