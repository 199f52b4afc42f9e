"""The outside world: synthetic data, Parquet files (and Postgres, later)."""
