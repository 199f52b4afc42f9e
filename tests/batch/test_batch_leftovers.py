"""optiq run: a --site of another organization is an error; switching to extracted touchpoints leaves no
other model's links on the touchpoints the users no longer have."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

import optiq_engine as oq
from optiq_engine.batch import run_batch
from optiq_engine.cli import app
from optiq_engine.io import db, postgres, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import retag

pytestmark = pytest.mark.postgres
runner = CliRunner()


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture()
def two_orgs(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        for org, seed_ in (("orgA", 3), ("orgB", 4)):
            seed.write_synthetic(url, retag(oq.synthetic.generate(n_users=200, seed=seed_), org), page_views=True)
        yield url


def test_a_site_of_another_organization_is_an_error(two_orgs: str) -> None:
    url = two_orgs
    for site, what in (("site_orgB", "another organization"), ("no_such_site", "no tracking site")):
        result = runner.invoke(app, ["run", "--database-url", url, "--org", "orgA", "--site", site, "--full"])
        assert result.exit_code == 2, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and site in errors[0] and what in errors[0], result.output
    with psycopg.connect(_dsn(url)) as conn:
        assert conn.execute('SELECT count(*) FROM "EngineRun"').fetchone() == (0,)
    assert run_batch(url, organization_id="orgA", site_id="site_orgA", full=True).links > 0


def _links_by_kind(url: str, org: str) -> dict[tuple[str, bool], int]:
    with psycopg.connect(_dsn(url)) as conn:
        rows = conn.execute(
            """SELECT l.model::text, tp.id ~ %s, count(*) FROM "AttributionLink" l
               JOIN "TouchPoint" tp ON tp.id = l."touchPointId" JOIN "TrackingSite" s ON s.id = tp."siteId"
               WHERE s."organizationId" = %s GROUP BY 1, 2""",
            (postgres.ENGINE_TOUCHPOINT_PATTERN, org),
        ).fetchall()
    return {(model, engine): n for model, engine, n in rows}


def test_switching_to_extracted_touchpoints_removes_other_models_links_to_the_old_ones(two_orgs: str) -> None:
    url = two_orgs
    run_batch(url, organization_id="orgA", full=True, models=["MARKOV", "LINEAR"], extract_touchpoints=False)
    run_batch(url, organization_id="orgB", full=True, models=["MARKOV", "LINEAR"], extract_touchpoints=False)
    before = _links_by_kind(url, "orgA")
    other_org = _links_by_kind(url, "orgB")
    assert before[("MARKOV", False)] > 0 and ("MARKOV", True) not in before
    switched = run_batch(url, organization_id="orgA", full=True, models=["LINEAR"], extract_touchpoints=True)
    after = _links_by_kind(url, "orgA")
    assert switched.stale_links_deleted == before[("MARKOV", False)]
    assert ("MARKOV", False) not in after and ("LINEAR", False) not in after  # nothing left on the old rows
    assert after[("LINEAR", True)] > 0
    assert _links_by_kind(url, "orgB") == other_org  # another organization's links are untouched
