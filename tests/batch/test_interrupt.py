"""SIGINT / SIGTERM stop optiq attribute and optiq run cleanly: exit 130 / 143, no staging folder, previous
results intact, the interrupted run FAILED; a run left RUNNING by a process that is gone becomes ABANDONED.

The commands run as subprocesses paused in a stage by the test hook ``OPTIQ_TEST_PAUSE_STAGE``
(:func:`optiq_engine._interrupt.pause_for_tests`); the signal is sent once the pause is announced.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

import optiq_engine as oq
from optiq_engine._interrupt import PAUSE_VARIABLE, Interrupted, checkpoint, handle_signals
from optiq_engine.batch import run_batch
from optiq_engine.io import db, seed
from tests.support.pg import fresh_database
from tests.support.pg_data import db_links, retag

_OPTIQ = [sys.executable, "-m", "optiq_engine.cli"]


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _interrupted(command: list[str], stage: str, signum: int, *, timeout: float = 240.0) -> tuple[int, str]:
    """Run ``command`` paused in ``stage``, send ``signum`` when the pause is announced; (exit code, stderr)."""
    env = {**os.environ, PAUSE_VARIABLE: f"{stage}:120", "COLUMNS": "200"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    paused = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if line.startswith(f"optiq test pause: {stage}"):
                paused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert paused.wait(timeout), "".join(lines)
        process.send_signal(signum)
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(timeout=10)
    return process.returncode, "".join(lines)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    folder = tmp_path_factory.mktemp("interrupt")
    data = oq.synthetic.generate(n_users=2_000, seed=5)
    data.touchpoints.write_parquet(folder / "tp.parquet")
    data.conversions.write_parquet(folder / "cv.parquet")
    out = folder / "out"
    done = subprocess.run(
        [
            *_OPTIQ,
            "attribute",
            "--touchpoints",
            str(folder / "tp.parquet"),
            "--conversions",
            str(folder / "cv.parquet"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    yield folder / "tp.parquet", folder / "cv.parquet", out


@pytest.mark.parametrize(("signum", "code", "stage"), [(signal.SIGINT, 130, "match"), (signal.SIGTERM, 143, "frames")])
def test_attribute_stops_cleanly_and_keeps_the_previous_results(inputs, signum: int, code: int, stage: str) -> None:
    touchpoints, conversions, out = inputs
    before = _files(out)
    command = [
        *_OPTIQ,
        "attribute",
        "--touchpoints",
        str(touchpoints),
        "--conversions",
        str(conversions),
        "--out",
        str(out),
    ]
    returncode, stderr = _interrupted(command, stage, signum)
    assert returncode == code, stderr
    assert "Traceback" not in stderr and "SystemError" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("interrupted:")], stderr
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no .staging-* nor .old-*
    assert _files(out) == before


def test_checkpoint_is_a_no_op_outside_handle_signals_and_raises_after_a_signal_inside() -> None:
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest was started in the background
    checkpoint()
    with pytest.raises(Interrupted) as raised, handle_signals():
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the handler runs between bytecodes
            checkpoint()
    assert raised.value.exit_code == 130 and not raised.value.finished
    assert not isinstance(raised.value, Exception)  # `except Exception` never swallows it
    checkpoint()  # the flag went with the block
    assert signal.getsignal(signal.SIGINT) == before  # the handler the block found is back


@pytest.fixture()
def database(postgres_url: str) -> Iterator[str]:
    data = retag(oq.synthetic.generate(n_users=300, seed=11), "orgI")
    with fresh_database(postgres_url, upgraded=True) as url:
        db.upgrade(url)
        seed.write_synthetic(url, data, page_views=True)
        yield url


def _runs(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(_dsn(url)) as conn:
        return conn.execute('SELECT id, status FROM "EngineRun" ORDER BY "startedAt", id').fetchall()


@pytest.mark.postgres
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_optiq_run_is_recorded_failed_and_writes_nothing(database: str, signum: int, code: int) -> None:
    url = database
    first = run_batch(url, organization_id="orgI", full=True)
    links = db_links(url, "orgI")
    command = [*_OPTIQ, "run", "--database-url", url, "--org", "orgI", "--full", "--models", "LINEAR"]
    returncode, stderr = _interrupted(command, "weights", signum)
    assert returncode == code, stderr
    assert "Traceback" not in stderr
    runs = _runs(url)
    assert [status for _, status in runs] == ["SUCCEEDED", "FAILED"]
    assert runs[0][0] == first.run_id
    with psycopg.connect(_dsn(url)) as conn:
        (error,) = conn.execute("""SELECT summary->>'error' FROM "EngineRun" WHERE status = 'FAILED'""").fetchone()
    assert "Interrupted" in error and signal.Signals(signum).name in error
    assert db_links(url, "orgI").equals(links)


@pytest.mark.postgres
def test_a_run_left_running_by_a_process_that_is_gone_becomes_abandoned(database: str) -> None:
    url = database
    with psycopg.connect(_dsn(url)) as conn:  # what SIGKILLed runs leave behind, and one still alive
        conn.execute("""INSERT INTO "Organization" (id, name, slug) VALUES ('orgK', 'K', 'k'), ('orgL', 'L', 'l')""")
        conn.execute(
            """INSERT INTO "EngineRun" (id, "organizationId", mode, status, "startedAt") VALUES
               ('run_killed', 'orgI', 'FULL', 'RUNNING', now() - interval '1 hour'),
               ('run_killed_k', 'orgK', 'FULL', 'RUNNING', now() - interval '1 hour'),
               ('run_alive_l', 'orgL', 'FULL', 'RUNNING', now())"""
        )
    with psycopg.connect(_dsn(url), autocommit=True) as alive:  # orgL's run holds its lock
        alive.execute("SELECT pg_advisory_lock(hashtextextended('optiq-engine-run:orgL', 0))")
        summary = run_batch(url, organization_id="orgI", full=True)
    runs = dict(_runs(url))
    assert runs == {
        "run_killed": "ABANDONED",
        "run_killed_k": "ABANDONED",
        "run_alive_l": "RUNNING",
        summary.run_id: "SUCCEEDED",
    }
    with psycopg.connect(_dsn(url)) as conn:
        (finished, error) = conn.execute(
            """SELECT "finishedAt", summary->>'error' FROM "EngineRun" WHERE id = 'run_killed'"""
        ).fetchone()
    assert finished is not None and "abandoned" in error
