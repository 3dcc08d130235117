"""The OpenAPI document: it lists exactly the routes the app has, and a running daemon keeps its
promises when schemathesis fuzzes every operation (writes included, with valid tokens)."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from types import SimpleNamespace
from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from gridwatch.schema import STANDARD_SCHEMA
from gridwatch.testing import DaemonProcess, free_port, wait_for
from gridwatch.tokens import digest, password_digest
from gridwatch.web import openapi
from gridwatch.web.app import make_app
from tests.test_security import (
    INGEST_TOKEN,
    PASSWORD,
    PROTECTED,
    READ_TOKEN,
    USER,
    WRITE_TOKEN,
    bearer,
    request,
    write_config,
)

BOARD = {"/", "/board/{name}"}  # the status board: HTML for people, not part of the API


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/{}]+", re.escape(template)) + "$")


def _routes() -> set[tuple[str, str]]:
    app = make_app(cast(Any, object()))
    return {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None and r.resource.canonical not in BOARD
    }


def test_every_route_is_documented_and_every_documented_operation_is_routed():
    doc = openapi.document()
    documented = {(m.upper(), path) for path, item in doc["paths"].items() for m in item if m != "parameters"}
    routes = _routes()
    assert any(path.startswith("/api/v1/") for _, path in routes)

    def served_by(method: str, path: str, route: tuple[str, str]) -> bool:
        return route[0] == method and (route[1] == path or bool(_pattern(route[1]).match(path)))

    undocumented = {r for r in routes if not any(served_by(m, p, r) for m, p in documented)}
    unrouted = {(m, p) for m, p in documented if not any(served_by(m, p, r) for r in routes)}
    assert not undocumented, f"routes missing from gridwatch/web/openapi.py: {sorted(undocumented)}"
    assert not unrouted, f"documented operations no route serves: {sorted(unrouted)}"
    # /api/v1/ingest/{table} is documented per table, with each table's columns
    ingest = {p.rsplit("/", 1)[1] for _, p in documented if p.startswith("/api/v1/ingest/")}
    assert ingest == set(STANDARD_SCHEMA)


def test_the_document_is_valid_openapi_and_names_every_error_shape():
    doc = openapi.document()
    schema = schemathesis.openapi.from_dict(doc)  # refuses a document that is not valid OpenAPI
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == sum(len([m for m in item if m != "parameters"]) for item in doc["paths"].values())
    for op in operations:
        for status, response in op.definition.raw["responses"].items():
            if int(status) >= 400 and op.path not in ("/readyz", "/api/v1/reload"):
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_served_document_declares_the_credentials_the_daemon_asks_for(tmp_path):
    port = free_port()
    with DaemonProcess(write_config(tmp_path, port, PROTECTED), port) as d:
        status, _, body = request(d.base, "GET", "/api/v1/openapi.json", bearer(READ_TOKEN))
        assert status == 200
        doc = json.loads(body)
    assert doc["paths"]["/api/v1/grids"]["get"]["security"] == [
        {"readToken": []},
        {"basicAuth": []},
        {"writeToken": []},
    ]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert doc["paths"]["/api/v1/silences"]["post"]["security"] == [{"writeToken": []}]
    assert doc["paths"]["/api/v1/ingest/visits"]["post"]["security"] == [{"ingestToken": []}]
    assert "security" not in openapi.document()["paths"]["/api/v1/grids"]["get"]  # open reads by default


# -- fuzzing a running daemon ----------------------------------------------------------------------

# the document as the fuzzed daemon serves it (PROTECTED: a read token, basic auth and a write token);
# the fixture checks it is the one served, so what is fuzzed is what is published
# per operation and phase; GRIDWATCH_FUZZ_EXAMPLES=1000 searches harder (minutes instead of ~30 s)
FUZZ_EXAMPLES = int(os.environ.get("GRIDWATCH_FUZZ_EXAMPLES", "30"))
FUZZED_SETTINGS = SimpleNamespace(
    reads_protected=True,
    read_token_sha256=digest(READ_TOKEN),
    token_sha256=digest(WRITE_TOKEN),
    basic_auth_users={USER: password_digest(PASSWORD)},
)
DOCUMENT = openapi.document(cast(Any, FUZZED_SETTINGS), ["inbox"])
FUZZING = SchemathesisConfig.from_dict(
    {
        # every security scheme gets its valid credentials, so requests reach the handlers; schemathesis
        # also tries each operation without them and with wrong ones (the ignored_auth check)
        "auth": {
            "openapi": {
                "readToken": {"bearer": READ_TOKEN},
                "basicAuth": {"username": USER, "password": PASSWORD},
                "writeToken": {"bearer": WRITE_TOKEN},
                "ingestToken": {"bearer": INGEST_TOKEN},
            }
        },
        # an unknown query parameter is ignored, as by most HTTP APIs, not refused
        "generation": {"allow-extra-parameters": False},
        "checks": {
            # a well-formed request may still be impossible (a silence that ends before it starts): 422
            "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422"]},
        },
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=FUZZING)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory):
    """A daemon with every credential configured: reads, writes and an ingest source."""
    directory = tmp_path_factory.mktemp("fuzzed")
    port = free_port()
    with DaemonProcess(write_config(directory, port, PROTECTED), port) as d:
        wait_for(lambda: request(d.base, "GET", "/readyz")[0] == 200, 20, "readiness")
        served = json.loads(request(d.base, "GET", "/api/v1/openapi.json", bearer(READ_TOKEN))[2])
        assert served == json.loads(json.dumps(DOCUMENT))
        yield d
        log = d.log()
    assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_fuzzing_finds_no_server_error_and_every_answer_matches_the_document(case: Any, fuzzed: DaemonProcess) -> None:
    case.call_and_validate(base_url=fuzzed.base)


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        # what fuzzing found, and cousins of it: each was a 500 (or worse) before
        ("POST", "/api/v1/silences", b'{"matchers": {"a": "b"}, "createdBy": "x", "duration": "9999999999w"}', 422),
        (
            "POST",
            "/api/v1/silences",
            b'{"matchers": {"a": "b"}, "createdBy": "x", "endsAt": "9999-12-31T23:59:59-14:00"}',
            201,
        ),
        (
            "POST",
            "/api/v1/silences",
            b'{"matchers": {"a": "b"}, "createdBy": "x", "startsAt": "0001-01-01T00:00:00+14:00"}',
            201,
        ),
        (
            "POST",
            "/api/v1/silences",
            b'{"matchers": [{"name": "a", "value": "(", "isRegex": true}], "createdBy": "x"}',
            422,
        ),
        (
            "POST",
            "/api/v1/silences",
            b'{"matchers": [{"name": "a", "value": "b", "isEqual": false}], "createdBy": "x"}',
            400,
        ),
        ("POST", "/api/v1/silences", b'{"matchers": {"a": 1}, "createdBy": {"who": "x"}}', 400),
        ("POST", "/api/v1/ingest/reports", b'{"report_id": "R1", "\\ud800": 1}', 400),
        ("POST", "/api/v1/ingest/reports", b"[" * 100_000 + b"]" * 100_000, 400),
        ("POST", "/api/v1/ingest/reports", b'{"report_id": NaN}', 400),
        ("POST", "/api/v1/ingest/reports", b'{"report_id": "R1", "period": 1e400}', 400),
        ("POST", "/api/v1/ingest/reports", b'{"report_id": 123456789012345678901234567890}', 400),
        ("POST", "/api/v1/ingest/reports", b"\xff\xfe not utf-8", 400),
    ],
    ids=[
        "duration-past-a-century",
        "end-past-year-9999",
        "start-before-year-1",
        "invalid-regex",
        "negative-matcher",
        "wrong-types",
        "lone-surrogate-key",
        "deep-nesting",
        "nan",
        "infinity",
        "int-past-64-bits",
        "not-utf8",
    ],
)
def test_hostile_bodies_get_a_json_answer_never_a_500(fuzzed, method, path, body, status):
    token = WRITE_TOKEN if "silences" in path else INGEST_TOKEN
    req = urllib.request.Request(
        fuzzed.base + path, data=body, method=method, headers={**bearer(token), "Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            got, answer = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        got, answer = exc.code, json.loads(exc.read())
    assert got == status, answer
    if status >= 400:
        assert answer["status"] == status and answer["error"]
    # a stored silence stays listable (a time past what a timestamp can show once broke the listing)
    assert request(fuzzed.base, "GET", "/api/v1/silences", bearer(READ_TOKEN))[0] == 200
