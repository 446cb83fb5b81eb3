"""The HTTP gateway: ingestion, synchronous scoring, analyst alerts and feedback, drift reports.

`create_app(settings)` builds the FastAPI app; `fraudops serve gateway` runs it with uvicorn.
"""
