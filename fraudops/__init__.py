"""fraudops: shared domain package (schema, features, models, data)."""

__version__ = "0.1.0"
