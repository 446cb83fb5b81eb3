"""Transaction data sets: the tabular layout, synthetic generation and import of a user's data."""
