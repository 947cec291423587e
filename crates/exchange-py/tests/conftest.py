"""The federation these tests run against is started by the Rust test
`tests/e2e/python_package.rs` (run by the README's test command), which
passes its addresses and certificates through environment variables."""

import json
import os

import pytest

import exchange


@pytest.fixture(scope="session")
def job() -> dict:
    text = os.environ.get("EXCHANGE_PY_TEST_JOB")
    if not text:
        pytest.fail(
            "EXCHANGE_PY_TEST_JOB is not set: run these tests through "
            "`cargo test -p exchange-tests --test e2e python_package`, which starts a federation for them"
        )
    return json.loads(text)


@pytest.fixture(scope="session")
def ex(job):
    with exchange.connect(job["analyst_config"], user="Python 测试员") as connection:
        yield connection


@pytest.fixture(scope="session")
def owner(job):
    with exchange.connect(job["owner_config"]) as connection:
        yield connection
