"""Feedback loops: the payload-log receiver and feedback API, drift and quality reports, data ingest."""
