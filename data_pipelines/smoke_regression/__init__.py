"""A procedural regression dataset for the runtime's end-to-end smoke job."""

from data_pipelines.smoke_regression.source import RegressionSource, make_splits

__all__ = ["RegressionSource", "make_splits"]
