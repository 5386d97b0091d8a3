"""Fixtures shared by the ``nas`` tests: a small search's arguments, a PostgreSQL database.

``small_search`` is the command line of a search that builds in a fraction of a second: a
CIFAR ResNet-20 at 16x16 on synthetic data, scored by the installed surrogate evaluator
(:mod:`evaluators.surrogate`, no training). ``postgres_database`` is the URL of a new, empty
database on the server named by ``CONVNAS_TEST_POSTGRES_URL`` (``.ci/run`` starts one), dropped
after the test; without that variable the test is skipped.
"""

import os
import uuid

import pytest

SURROGATE = "evaluators.surrogate:evaluate"
_SMALL_SEARCH = (
    *("--backbone", "cifar_resnet20", "--resolution", "16", "--dataset", "synthetic"),
    *("--evaluator", SURROGATE),
)


@pytest.fixture
def small_search() -> list[str]:
    """``python -m nas.search`` arguments of a tiny search (a new list for each test)."""
    return list(_SMALL_SEARCH)


@pytest.fixture
def postgres_database():
    """The URL of a new, empty database on the PostgreSQL server (dropped afterwards)."""
    server = os.environ.get("CONVNAS_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("CONVNAS_TEST_POSTGRES_URL is not set (.ci/run sets it)")
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    name = f"convnas_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
