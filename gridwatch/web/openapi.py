"""The OpenAPI 3.1 document of gridwatch's HTTP API, served at ``GET /api/v1/openapi.json``.

Request bodies are pydantic models that the handlers in :mod:`gridwatch.web.app` validate with, and
their JSON Schemas go into the document, so what the document promises and what the server
accepts cannot drift apart. Responses are described here by hand; ``tests/test_openapi.py``
holds every route to the document and fuzzes a running daemon against it.

The document is built per daemon from its settings: the read endpoints declare credentials only
when ``[server]`` asks for them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    TypeAdapter,
    create_model,
)

from gridwatch import __version__
from gridwatch.api import Kind
from gridwatch.schema import STANDARD_SCHEMA

if TYPE_CHECKING:
    from gridwatch.config import Settings

LABEL_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+$"
# silences are clamped to what a timestamp can be shown as: nothing happens before year 2 or after 9999
EARLIEST = datetime(1, 1, 2, tzinfo=UTC).timestamp()
LATEST = datetime(9999, 12, 30, tzinfo=UTC).timestamp()
_INT64 = (-(2**63), 2**63 - 1)


# -- request bodies ----------------------------------------------------------------------------


class Matcher(BaseModel):
    """One label matcher, as Alertmanager spells it (negative matchers are not supported)."""

    model_config = ConfigDict(strict=True, extra="forbid")
    name: str = Field(pattern=LABEL_NAME)
    value: str
    isRegex: bool = False  # Alertmanager's spelling
    isEqual: Literal[True] = True


class SilenceRequest(BaseModel):
    """``POST /api/v1/silences``: Alertmanager's silence, plus ``duration`` and a ``{name: value}``
    shorthand for the matchers. Keys it does not know (an Alertmanager ``id``) are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")
    matchers: (
        Annotated[list[Matcher], Field(min_length=1)]
        | Annotated[
            dict[Annotated[str, Field(pattern=LABEL_NAME)], str],
            Field(min_length=1, json_schema_extra={"additionalProperties": False}),
        ]
    )
    startsAt: AwareDatetime | None = None
    """default: now"""
    endsAt: AwareDatetime | None = None
    """default: startsAt + duration"""
    duration: str = Field("1h", pattern=DURATION)
    createdBy: str = Field(min_length=1)
    comment: str = ""

    def matcher_list(self) -> list[dict[str, Any]]:
        if isinstance(self.matchers, dict):
            return [{"name": k, "value": v, "isRegex": False} for k, v in self.matchers.items()]
        return [{"name": m.name, "value": m.value, "isRegex": m.isRegex} for m in self.matchers]


_Int = Annotated[StrictInt, Field(ge=_INT64[0], le=_INT64[1])]
_Float = Annotated[StrictFloat, Field(ge=_INT64[0], le=_INT64[1], allow_inf_nan=False)]
_Id = Annotated[str, Field(min_length=1)] | _Int | _Float | StrictBool
_Value = str | _Int | _Float | StrictBool | None


def _row_model(table: str) -> type[BaseModel]:
    columns = STANDARD_SCHEMA[table]
    fields: dict[str, Any] = {columns[0]: (_Id, ...)}
    fields.update({c: (_Value, None) for c in columns[1:]})
    return create_model(
        f"{table.capitalize()}Row",
        __config__=ConfigDict(strict=True, extra="forbid"),
        __doc__=f"A row of the standard table {table}: its id is required, the other columns default to null.",
        **fields,
    )


ROW_MODELS: dict[str, type[BaseModel]] = {table: _row_model(table) for table in STANDARD_SCHEMA}
"""table → the model one pushed row of it must satisfy"""
ROW_LISTS: dict[str, TypeAdapter[list[Any]]] = {table: TypeAdapter(list[m]) for table, m in ROW_MODELS.items()}  # type: ignore[valid-type]
"""table → a validator of a list of its rows (one call for a whole batch)"""


# -- the document ------------------------------------------------------------------------------


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


_NULLABLE_STR = {"type": ["string", "null"]}
_COUNT = {"type": "integer", "minimum": 0}
_RANK = {"type": ["integer", "null"], "minimum": 1, "description": "1 is the best; equal scores share a rank"}
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
PERIOD = f"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?|-Q[1-4]|-W(0[1-9]|[1-4][0-9]|5[0-2]))?$"
"""A month, quarter, year, ISO week or day (a 53rd week is taken too, in the years that have one;
a 31st of a month that has 30 days is a 400)."""

_RESPONSE_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "description": "Every error answer: a message for people and the HTTP status.",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer", "minimum": 400, "maximum": 599}},
    },
    "Status": {
        "type": "object",
        "required": ["version", "started_at", "checks", "sources", "state_database"],
        "properties": {
            "version": {"type": "string"},
            "state_database": {"$ref": "#/components/schemas/StateDatabase"},
            "started_at": {"type": "string", "format": "date-time"},
            "checks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "type", "last_run", "duration_seconds", "ok", "error"],
                    "properties": {
                        "name": {"type": "string"},
                        "type": {"type": "string"},
                        "last_run": {"type": ["string", "null"], "format": "date-time"},
                        "duration_seconds": {"type": ["number", "null"]},
                        "ok": {"type": ["boolean", "null"]},
                        "error": _NULLABLE_STR,
                    },
                },
            },
            "sources": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "type", "up", "error", "tables"],
                    "properties": {
                        "name": {"type": "string"},
                        "type": {"type": "string"},
                        "up": {"type": ["boolean", "null"]},
                        "error": _NULLABLE_STR,
                        "tables": {
                            "type": "array",
                            "description": "How each table the checks read is followed between runs: only what "
                            "was appended (or changed) since the last run, by a cursor column, or in full on "
                            "every run, and why (no cursor configured, or a source that cannot follow one).",
                            "items": {
                                "type": "object",
                                "required": ["table", "read", "cursor", "why"],
                                "properties": {
                                    "table": {"type": "string"},
                                    "read": {"type": "string", "enum": ["appended", "changed", "full"]},
                                    "cursor": _NULLABLE_STR,
                                    "why": {"type": ["string", "null"], "enum": ["no_cursor", "not_followable", None]},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "StateDatabase": {
        "type": "object",
        "description": "Whether the state database takes writes; while it does not (disk full, read-only), alert "
        "state and queued notifications live in memory only.",
        "required": ["writable", "error"],
        "properties": {"writable": {"type": "boolean"}, "error": _NULLABLE_STR},
    },
    "Light": {"type": "string", "enum": ["green", "yellow", "red"]},
    "GridLight": {
        "type": "object",
        "required": ["grid", "name", "community", "street", "light", "reasons"],
        "properties": {
            "grid": {"type": "string"},
            "name": {"type": "string"},
            "community": {"type": "string"},
            "street": {"type": "string"},
            "light": _ref("Light"),
            "reasons": {"type": "array", "items": {"type": "string"}},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["light", "code", "text"],
                    "properties": {"light": _ref("Light"), "code": {"type": "string"}, "text": {"type": "string"}},
                },
            },
        },
    },
    "GridDetail": {
        "allOf": [
            _ref("GridLight"),
            {
                "type": "object",
                "required": ["zone", "metrics", "alerts", "days"],
                "properties": {
                    "zone": _NULLABLE_STR,
                    "metrics": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["metric", "labels", "value"],
                            "properties": {
                                "metric": {"type": "string"},
                                "labels": _ref("Labels"),
                                "value": {"type": "number"},
                                "title": {
                                    "description": "what the check calls the metric; null when it says nothing",
                                    "oneOf": [_ref("Names"), {"type": "null"}],
                                },
                                "kind": {
                                    "description": "how the value reads: count, ratio (0-1), timestamp (Unix "
                                    "seconds), seconds (a duration), flag (0/1), status (a code named by "
                                    "value_title), number; null when the check says nothing",
                                    "type": ["string", "null"],
                                    "enum": [*get_args(Kind), None],
                                },
                                "value_title": {
                                    "description": "the name of a status value; null for other values",
                                    "oneOf": [_ref("Names"), {"type": "null"}],
                                },
                                "label_titles": {
                                    "description": "label -> the display name of its value (独居老人 for "
                                    "category elderly_alone), for the labels whose value has one",
                                    "type": "object",
                                    "additionalProperties": _ref("Names"),
                                },
                            },
                        },
                    },
                    "alerts": {"type": "array", "items": _ref("Alert")},
                    "days": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["day", "light"],
                            "properties": {"day": {"type": "string", "format": "date"}, "light": {"type": "string"}},
                        },
                    },
                },
            },
        ]
    },
    "Labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "Names": {
        "type": "object",
        "description": "a name in Chinese and in English",
        "required": ["zh", "en"],
        "properties": {"zh": {"type": "string"}, "en": {"type": "string"}},
    },
    "Alert": {
        "type": "object",
        "required": ["alert", "labels", "state", "severity", "value", "active_since", "summary"],
        "properties": {
            "alert": {"type": "string"},
            "labels": _ref("Labels"),
            "state": {"type": "string", "enum": ["pending", "firing", "resolved"]},
            "severity": {"type": "string"},
            "value": {"type": "number"},
            "active_since": {"type": ["string", "null"], "format": "date-time"},
            "summary": {"type": "string"},
            "description": {"type": "string"},
            "silenced": {"type": "boolean"},
            "title": {
                "oneOf": [_ref("Names"), {"type": "null"}],
                "description": "the rule's display name ([display_names.alertname]); null when nobody named it",
            },
        },
    },
    "Silence": {
        "type": "object",
        "required": ["id", "matchers", "startsAt", "endsAt", "createdBy", "comment", "status"],
        "properties": {
            "id": {"type": "string"},
            "matchers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "value", "isRegex"],
                    "properties": {
                        "name": {"type": "string"},
                        "value": {"type": "string"},
                        "isRegex": {"type": "boolean"},
                    },
                },
            },
            "startsAt": {"type": "string", "format": "date-time"},
            "endsAt": {"type": "string", "format": "date-time"},
            "createdBy": {"type": "string"},
            "comment": {"type": "string"},
            "status": {
                "type": "object",
                "required": ["state"],
                "properties": {"state": {"type": "string", "enum": ["active", "pending", "expired"]}},
            },
        },
    },
    "Indicator": {
        "type": "object",
        "description": "A ratio pooled over grids: the sum of their numerators over the sum of their denominators, "
        "never an average of their ratios; ratio is null when there is nothing to divide by.",
        "required": ["metric", "labels", "title", "numerator", "denominator", "ratio"],
        "properties": {
            "metric": {"type": "string"},
            "labels": _ref("Labels"),
            "title": {"oneOf": [_ref("Names"), {"type": "null"}]},
            "numerator": {"type": "number", "minimum": 0},
            "denominator": {"type": "number", "minimum": 0},
            "ratio": {"type": ["number", "null"]},
        },
    },
    "Summary": {
        "type": "object",
        "required": ["by", "period", "units"],
        "properties": {
            "by": {"type": "string", "enum": ["street", "community", "district"]},
            "period": {"type": "string", "description": "the period the scores are for"},
            "units": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "street",
                        "community",
                        "grids",
                        "lights",
                        "indicators",
                        "score",
                        "rank",
                        "ranking",
                    ],
                    "properties": {
                        "street": {**_NULLABLE_STR, "description": "null for the district"},
                        "community": {**_NULLABLE_STR, "description": "null unless by=community"},
                        "grids": _COUNT,
                        "lights": {
                            "type": "object",
                            "required": ["green", "yellow", "red"],
                            "properties": {"green": _COUNT, "yellow": _COUNT, "red": _COUNT},
                        },
                        "indicators": {"type": "array", "items": _ref("Indicator")},
                        "score": {"type": ["number", "null"], "description": "the mean of its grids' scores"},
                        "rank": {**_RANK, "description": "among its peers in the district, by score"},
                        "ranking": {
                            "type": "array",
                            "description": "its grids, best first",
                            "items": {
                                "type": "object",
                                "required": ["grid", "name", "score", "rank"],
                                "properties": {
                                    "grid": {"type": "string"},
                                    "name": {"type": "string"},
                                    "score": {"type": ["number", "null"]},
                                    "rank": _RANK,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
    "Assessment": {
        "type": "object",
        "required": ["period", "from", "to", "today", "items", "grids"],
        "properties": {
            "period": {"type": "string"},
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "today": {"type": "string", "format": "date", "description": "days after it are not counted"},
            "items": {
                "type": "array",
                "description": "the scorecard items in force ([assessment])",
                "items": {
                    "type": "object",
                    "required": ["indicator", "title", "metric", "points", "cap", "target"],
                    "properties": {
                        "indicator": {"type": "string"},
                        "title": {"type": "string"},
                        "metric": _NULLABLE_STR,
                        "points": {"type": "number", "minimum": 0},
                        "cap": {"type": "number", "minimum": 0},
                        "target": {"type": ["number", "null"]},
                    },
                },
            },
            "grids": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["grid", "name", "community", "street", "since", "days", "score", "deductions", "rank"],
                    "properties": {
                        "grid": {"type": "string"},
                        "name": {"type": "string"},
                        "community": {"type": "string"},
                        "street": {"type": "string"},
                        "since": {"type": ["string", "null"], "format": "date"},
                        "days": {
                            "type": "object",
                            "required": ["green", "yellow", "red", "unrecorded"],
                            "properties": {"green": _COUNT, "yellow": _COUNT, "red": _COUNT, "unrecorded": _COUNT},
                        },
                        "score": {"type": "number", "minimum": 0, "maximum": 100},
                        "deductions": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["indicator", "points", "why"],
                                "properties": {
                                    "indicator": {"type": "string"},
                                    "points": {"type": "number", "minimum": 0},
                                    "why": {"type": "string"},
                                },
                            },
                        },
                        "rank": {
                            "type": "object",
                            "required": ["street", "district"],
                            "properties": {"street": _RANK, "district": _RANK},
                        },
                    },
                },
            },
        },
    },
    "Stored": {
        "type": "object",
        "required": ["stored", "table"],
        "properties": {"stored": {"type": "integer", "minimum": 0}, "table": {"type": "string"}},
    },
}


@functools.cache
def _model_schemas() -> dict[str, dict[str, Any]]:
    """The request models' JSON Schemas, with their nested definitions, for ``components``."""
    out: dict[str, dict[str, Any]] = {}
    models: list[type[BaseModel]] = [SilenceRequest, *ROW_MODELS.values()]
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def _security_schemes() -> dict[str, Any]:
    return {
        "writeToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "[server] token / token_sha256: silences and reload",
        },
        "ingestToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "the ingest source's token / token_sha256",
        },
        "readToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "[server] read_token / read_token_sha256 (the write token is accepted too)",
        },
        "basicAuth": {
            "type": "http",
            "scheme": "basic",
            "description": "[server] basic_auth_users: user → SHA-256 of the password",
        },
        "readerToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "[[server.readers]] token_sha256: reads only its streets' and communities' grids",
        },
        "readerBasic": {
            "type": "http",
            "scheme": "basic",
            "description": "[[server.readers]] user and password_hash (bcrypt): reads only its streets' and "
            "communities' grids",
        },
    }


def document(settings: Settings | None = None, ingest_sources: Sequence[str] = ()) -> dict[str, Any]:
    """The OpenAPI document for a daemon with these settings (None: reads open, as by default) and
    these ingest sources (the values ``?source=`` may take)."""
    read_security: list[dict[str, list[str]]] = []
    if settings is not None and settings.reads_protected:
        if settings.read_token_sha256:
            read_security.append({"readToken": []})
        if settings.basic_auth_users:
            read_security.append({"basicAuth": []})
        if settings.token_sha256:
            read_security.append({"writeToken": []})
        readers = getattr(settings, "readers", ())  # a settings-like object may leave them out
        if any(r.token_sha256 for r in readers):
            read_security.append({"readerToken": []})
        if any(r.user for r in readers):
            read_security.append({"readerBasic": []})
    unauthorized = {"401": _error("credentials missing or wrong")} if read_security else {}
    if settings is None or not settings.reads_protected or getattr(settings, "hostnames", None) is not None:
        unauthorized["421"] = _error("the Host header names neither an IP address, localhost nor [server] hostnames")

    def read(summary: str, ok: dict[str, Any], **more: Any) -> dict[str, Any]:
        op = {"summary": summary, "responses": {"200": ok, **unauthorized, **more.pop("responses", {})}, **more}
        if read_security:
            op["security"] = read_security
        return op

    def write(summary: str, responses: dict[str, Any], security: str = "writeToken", **more: Any) -> dict[str, Any]:
        auth = {
            "401": _error("the bearer token is missing or wrong"),
            "403": _error("write endpoints are disabled: no [server] token is configured"),
        }
        if security != "writeToken":
            auth.pop("403")
        if "421" in unauthorized:
            auth["421"] = unauthorized["421"]
        return {"summary": summary, "security": [{security: []}], "responses": {**responses, **auth}, **more}

    body_errors = {
        "400": _error("the body is not valid JSON or does not match the schema"),
        "408": _error("the body did not arrive within [server] client_timeout"),
        "413": _error("the body is larger than 4 MiB"),
    }
    period_param = {
        "name": "period",
        "in": "query",
        "required": False,
        "schema": {
            "type": "string",
            "pattern": PERIOD,
            "examples": ["2026-10", "2026-Q4", "2026", "2026-W45", "2026-10-15"],
        },
    }
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "summary": "200 while the event loop runs; never needs credentials",
                "security": [],
                "responses": {"200": _json({"type": "object", "required": ["status"]}, "alive")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "200 once the config is loaded and every check has run once; never needs credentials",
                "security": [],
                "responses": {
                    "200": _json(_ref("Readiness"), "ready"),
                    "503": _json(_ref("Readiness"), "not ready yet: waiting_for names what"),
                },
            }
        },
        "/metrics": {
            "get": read(
                "Prometheus metrics (OpenMetrics when the Accept header asks for it)",
                {
                    "description": "the metrics",
                    "content": {
                        "text/plain": {"schema": {"type": "string"}},
                        "application/openmetrics-text": {"schema": {"type": "string"}},
                    },
                },
            )
        },
        "/api/v1/openapi.json": {
            "get": read("this document", _json({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI 3.1"))
        },
        "/api/v1/status": {"get": read("each check's last run and each source's state", _json(_ref("Status"), "ok"))},
        "/api/v1/grids": {
            "get": read(
                "every grid's light and its reasons", _json({"type": "array", "items": _ref("GridLight")}, "ok")
            )
        },
        "/api/v1/grids/{grid}": {
            "parameters": [{"name": "grid", "in": "path", "required": True, "schema": {"type": "string"}}],
            "get": read(
                "one grid: light, reasons, its series, its alerts and its recent daily lights",
                _json(_ref("GridDetail"), "ok"),
                responses={"404": _error("no such grid (or one the credential's streets do not hold)")},
            ),
        },
        "/api/v1/summary": {
            "get": read(
                "each street, community or the district: lights, every ratio pooled with its numerator and "
                "denominator, the mean score of its grids and its rank, its grids ranked",
                _json(_ref("Summary"), "ok"),
                parameters=[
                    {
                        "name": "by",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["street", "community", "district"], "default": "street"},
                    },
                    {**period_param, "description": "the period of the scores; default: this month so far"},
                ],
                responses={"400": _error("a bad by or period")},
            )
        },
        "/api/v1/assessment": {
            "get": read(
                "every grid's green, yellow and red days in the period, its score with the deductions and why, "
                "and its rank in its street and in the district; as JSON, CSV (UTF-8 with a BOM) or XLSX",
                {
                    "description": "the assessment; CSV and XLSX as an attachment",
                    "content": {
                        "application/json": {"schema": _ref("Assessment")},
                        "text/csv": {"schema": {"type": "string"}},
                        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                parameters=[
                    {**period_param, "description": "default: this month so far"},
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["json", "csv", "xlsx"], "default": "json"},
                    },
                ],
                responses={"400": _error("a bad period or format")},
            )
        },
        "/api/v1/alerts": {
            "get": read(
                "alerts: pending, firing and recently resolved, newest first",
                _json({"type": "array", "items": _ref("Alert")}, "ok"),
            )
        },
        "/api/v1/silences": {
            "get": read("silences, newest first", _json({"type": "array", "items": _ref("Silence")}, "ok")),
            "post": write(
                "silence the alerts whose labels (and severity) match",
                {
                    "201": _json(_ref("Silence"), "the new silence"),
                    **body_errors,
                    "422": _error(
                        "well formed but not possible: it ends before it starts or has already ended, "
                        "or a regex is not RE2 syntax (no backreferences or lookaround)"
                    ),
                },
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("SilenceRequest")}}},
            ),
        },
        "/api/v1/silences/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "delete": write(
                "expire a silence now",
                {
                    "200": _json(
                        {"type": "object", "required": ["expired"], "properties": {"expired": {"type": "string"}}},
                        "expired",
                    ),
                    "404": _error("no such active silence"),
                },
            ),
        },
        "/api/v1/reload": {
            "post": write(
                "re-read the config file (as SIGHUP does)",
                {
                    "200": _json(_ref("Reloaded"), "the new config is in force"),
                    "422": _json(_ref("Reloaded"), "the config is invalid: the running one stays"),
                },
            )
        },
    }
    source_param = {
        "name": "source",
        "in": "query",
        "required": False,
        "description": "the ingest source, when several are configured",
        "schema": {"type": "string", **({"enum": sorted(ingest_sources)} if ingest_sources else {})},
    }
    for table in STANDARD_SCHEMA:
        row = _ref(ROW_MODELS[table].__name__)
        paths[f"/api/v1/ingest/{table}"] = {
            "post": write(
                f"push rows of {table} into an ingest source; rows upsert by their id, all or nothing",
                {
                    "200": _json(_ref("Stored"), "nothing to store (an empty list)"),
                    "201": _json(_ref("Stored"), "stored"),
                    **body_errors,
                    "404": _error("no ingest source, or several and no ?source= naming one"),
                    "503": _error("the ingest file cannot be written"),
                },
                security="ingestToken",
                parameters=[source_param],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"oneOf": [row, {"type": "array", "items": row}]}},
                    },
                },
            )
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gridwatch",
            "version": __version__,
            "description": "Community grid monitoring: lights, alerts, silences and pushed rows. "
            "Every error is JSON: {error, status}.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                **_RESPONSE_SCHEMAS,
                "Readiness": {
                    "type": "object",
                    "required": ["ready"],
                    "properties": {
                        "ready": {"type": "boolean"},
                        "waiting_for": {"type": "array", "items": {"type": "string"}},
                        "state_database": _ref("StateDatabase"),
                    },
                },
                "Reloaded": {
                    "type": "object",
                    "required": ["reloaded"],
                    "properties": {"reloaded": {"type": "boolean"}},
                },
                **_model_schemas(),
            },
            "securitySchemes": _security_schemes(),
        },
    }
