"""Data sources and host-side input pipelines."""
