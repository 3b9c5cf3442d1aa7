"""Fixtures of the end-to-end tests: a fresh XMPP server (Prosody, or
ejabberd where a module asks for it), relay and facteur per test, all on
loopback, all stopped by PID even when a test fails."""

import pytest

from peers import Gateway, PgCluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    gateway = item.funcargs.get("gateway") if hasattr(item, "funcargs") else None
    if report.failed and gateway is not None:
        report.sections.append(("facteur log (tail)", gateway.facteur.log_tail()))
        if gateway.xmpp.name == "ejabberd":
            log = gateway.xmpp.log_text().splitlines()[-60:]
            report.sections.append(("ejabberd log (tail)", "\n".join(log)))
    front = item.funcargs.get("front") if hasattr(item, "funcargs") else None
    if report.failed and front is not None:
        report.sections.append(("facteur log (tail)", front.facteur.log_tail()))
        report.sections.append(("Postfix mail log (tail)", front.postfix.log_tail()))
    net = item.funcargs.get("net") if hasattr(item, "funcargs") else None
    if report.failed and net is not None:
        for facteur in net.facteurs.values():
            report.sections.append((f"{facteur.gateway} log (tail)", facteur.log_tail(120)))


@pytest.fixture
def xmpp_server():
    """The XMPP server beside facteur; a test module parametrises it to
    run against several."""
    return "prosody"


@pytest.fixture
def store():
    """The store behind facteur: "sqlite", or "postgres" where a test
    module parametrises it."""
    return "sqlite"


@pytest.fixture(scope="session")
def pg_cluster():
    """One PostgreSQL cluster for the whole run, started by the first
    test that asks for it."""
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def store_url(request, store):
    """The `[store] url` of the test's facteur: None for SQLite in its
    directory, or a fresh PostgreSQL database."""
    if store == "sqlite":
        return None
    return request.getfixturevalue("pg_cluster").database()


@pytest.fixture
def gateway(tmp_path, xmpp_server, store_url):
    gw = Gateway(tmp_path, server=xmpp_server, store_url=store_url)
    try:
        gw.start()
        yield gw
    finally:
        gw.stop()
