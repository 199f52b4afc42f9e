"""The outside world: Parquet and CSV files, and Optiq Postgres databases.

Files (:mod:`.parquet`); Postgres reads and writes (:mod:`.postgres`), its schema (:mod:`.schema`) and
migrations (:mod:`.db`, ``migrations/``), the daily summaries the service reads (:mod:`.rollup`), loading a
user's tracking events into a database (:mod:`.load`) and seeding one with the simulator's data for demos,
tests and benchmarks (:mod:`.seed`). The simulators themselves live in :mod:`optiq_engine.simulate`.
"""
