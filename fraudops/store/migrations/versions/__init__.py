"""One module per schema change (Alembic revisions), oldest first: 0001 is the schema of the
release before migrations; each later one is what a feature added."""
