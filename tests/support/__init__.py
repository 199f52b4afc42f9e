"""What the tests of every folder share: no tests here.

- :mod:`.pg`: names and databases on the test server (the ``postgres_url`` fixture of ``tests/conftest.py``).
- :mod:`.pg_data`: synthetic data under an organization of its own, and the attribution links as stored
  in an Optiq database and as expected from a result.
- :mod:`.strategies`: Hypothesis strategies of small attribution inputs (the reference's plain-Python form).
- :mod:`.adapters`: the engine called with the reference's calling convention.
- :mod:`.spark`: the local Spark session of the Spark tests.
- :mod:`.service_data`, :mod:`.service_alert_data`, :mod:`.service_api`: the service tests' data sets
  and the HTTP API fixture.

The slow, obviously correct references the tests compare the engine with are in ``tests/reference/``.
"""
