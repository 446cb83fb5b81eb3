"""The store's Alembic migrations (``env.py``, ``versions/``), shipped inside the package so
that an installed wheel and the images can migrate; driven by `fraudops.store.migrate`."""
