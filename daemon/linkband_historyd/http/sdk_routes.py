"""The Link Band SDK's history routes (its ``router_history.py``), served over linkband-history.

The SDK's FastAPI server mounts the app where its router was, and drops the router::

    from linkband_historyd.http.sdk_routes import sdk_routes
    app.mount("/history/history", sdk_routes(auth=check))   # the SDK's URLs, unchanged

(the SDK includes its ``prefix="/history"`` router with ``prefix="/history"`` again,
so its routes answer at ``/history/history/logs``; mount at ``/history`` for
``/history/logs``, the URLs its Electron front end names, or at both). The 14
routes take the SDK's parameter names, defaults and bounds and answer its shapes:
bare arrays and objects, naive ISO datetimes (local time, as the SDK stores them),
``{"detail": [...]}`` with 422 for a bad parameter (FastAPI's list, see
``sdk_params``), ``{"detail": "..."}`` with 500 when the store fails, and
``GET /health`` 200 always. ``POST /cleanup`` is a dry run unless the body says
``"dry_run": false``; it and ``POST /optimize`` take no body as every default.
Its ``data_types`` (ignored by the SDK) limits a dry run's counts; a deletion of
only some kinds is refused (422), never done to all of them.

The data comes from ``linkband_history.sdk.HistoryDatabaseManager`` (``manager``;
by default one on the SDK's ``database/history.db``, made at the first request):
the routes call its public methods in worker threads, never on the event loop.
Auth is ``create_app``'s: ``token=``, or the host's ``auth(HTTPConnection) ->
bool``, or ``allow_unauthenticated=True`` when the host checks every request
itself; with the same Host, Origin and body-size guard (``guard``).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
from datetime import date, datetime, timedelta

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route

from linkband_history.protocol import LOG_LEVELS
from linkband_history.sdk import models
from linkband_historyd.http import sdk_overview
from linkband_historyd.http.app import LOOPBACK_HOSTS
from linkband_historyd.http.guard import MAX_BODY_BYTES, GuardMiddleware, request_check
from linkband_historyd.http.responses import JSON
from linkband_historyd.http.sdk_params import (Field, Invalid, body_values, dict_body,
                                               parse_body, query_values)

log = logging.getLogger("linkband_historyd.http.sdk")

METRIC_TYPES = tuple(m.value for m in models.MetricType)
LIMIT = Field("limit", "int", 100, ge=1, le=1000)
OFFSET = Field("offset", "int", 0, ge=0)
LEVELS = Field("levels", "enum", many=True, choices=LOG_LEVELS)
TYPES = Field("metric_types", "enum", many=True, choices=METRIC_TYPES)
SPAN = (Field("start_time", "datetime"), Field("end_time", "datetime"))
LOGS = (*SPAN, LEVELS, Field("logger_names", many=True), Field("search_text"),
        Field("modules", many=True), LIMIT, OFFSET)
METRICS = (*SPAN, TYPES, Field("metric_names", many=True), LIMIT, OFFSET)
CUSTOM_LOG = (Field("level", "enum", required=True, choices=LOG_LEVELS),
              Field("message", required=True), Field("logger_name", default="api"),
              Field("module"))
TABLES = {"metrics": "system_metrics", "performance": "performance_data", "logs": "system_logs",
          "alerts": "alert_history", "summaries": "data_summaries"}
CLEANUP = (Field("retention_days", "int", 30, ge=1, le=365), Field("data_types", many=True),
           Field("dry_run", "bool", True))


def jsonable(value):
    """A reply value as JSON data, the way FastAPI serializes the SDK's models: enum
    members by value, datetimes ``isoformat()`` (naive stays naive)."""
    if hasattr(type(value), "model_fields") and hasattr(value, "model_dump"):  # pydantic
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _levels(values):
    return None if values is None else [models.LogLevel(v) for v in values]


def _metric_types(values):
    return None if values is None else [models.MetricType(v) for v in values]


def _tables(data_types, dry_run: bool) -> set | None:
    """The tables ``data_types`` names (None: all). The SDK ignores the field and
    cleans every table; here a dry run counts only the named ones, and a deletion
    limited to some kinds is refused rather than done to all of them."""
    if not data_types:
        return None
    unknown = [t for t in data_types if t not in TABLES and t not in TABLES.values()]
    tables = {TABLES.get(t, t) for t in data_types}
    why = (f"unknown data type(s) {', '.join(map(repr, unknown))}; known: {', '.join(TABLES)}"
           if unknown else None if dry_run or tables == set(TABLES.values()) else
           "only a dry run can be limited to some data types; a cleanup deletes from all of "
           "them (leave data_types out)")
    if why:
        raise Invalid([{"type": "value_error", "loc": ["body", "data_types"],
                        "msg": f"Value error, {why}", "input": data_types, "ctx": {"error": why}}])
    return tables


def _recent(limit: int) -> dict:
    now = datetime.now()
    return {"start_time": now - timedelta(hours=24), "end_time": now, "limit": limit}


class SdkRoutes:
    """The routes' handlers over one manager (made on first use when none is given)."""

    def __init__(self, manager=None):
        self._manager, self._lock = manager, threading.Lock()

    def manager(self):
        """The manager; blocking the first time (it may start a daemon): call it in a
        worker thread."""
        with self._lock:
            if self._manager is None:
                from linkband_history.sdk import HistoryDatabaseManager
                self._manager = HistoryDatabaseManager()
            return self._manager

    async def run(self, fn):
        """``fn(manager)`` in a worker thread, its result as JSON data."""
        return await run_in_threadpool(lambda: jsonable(fn(self.manager())))

    async def call(self, what: str, fn) -> JSON:
        """:meth:`run` as the reply; a failure is the SDK's 500 ``{"detail": "..."}``."""
        try:
            return JSON(await self.run(fn))
        except Exception as exc:
            log.error("%s failed: %s", what, exc)
            return JSON({"detail": str(exc) or type(exc).__name__}, status_code=500)

    # -- logs -------------------------------------------------------------------
    async def logs(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(), LOGS)
        q["levels"] = _levels(q["levels"])
        return await self.call("logs", lambda m: m.query_logs(models.LogQuery(**q)))

    async def recent_logs(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(), (LIMIT, LEVELS))
        query = {**_recent(q["limit"]), "levels": _levels(q["levels"])}
        return await self.call("recent logs", lambda m: m.query_logs(models.LogQuery(**query)))

    async def search_logs(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(),
                         (Field("search_text", required=True), LIMIT))
        return await self.call("log search", lambda m: m.query_logs(models.LogQuery(**q)))

    async def custom_log(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(), CUSTOM_LOG)
        extra = dict_body(await _body(request, "dict_type"))
        entry = models.SystemLog(timestamp=datetime.now(), level=models.LogLevel(q["level"]),
                                 logger_name=q["logger_name"], message=q["message"],
                                 module=q["module"], thread_id=threading.get_ident(),
                                 process_id=os.getpid(), extra_data=extra)

        def store(m):
            m.store_log(entry)
            return {"status": "success", "message": "Log added successfully"}
        return await self.call("custom log", store)

    # -- metrics ------------------------------------------------------------------
    async def metrics(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(), METRICS)
        q["metric_types"] = _metric_types(q["metric_types"])
        return await self.call("metrics", lambda m: m.query_metrics(models.MetricQuery(**q)))

    async def recent_metrics(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(), (LIMIT, TYPES))
        query = {**_recent(q["limit"]), "metric_types": _metric_types(q["metric_types"])}
        return await self.call("recent metrics",
                               lambda m: m.query_metrics(models.MetricQuery(**query)))

    # -- statistics and analysis ----------------------------------------------------
    async def stats(self, request: Request) -> JSON:
        return await self.call("stats", lambda m: m.get_history_stats())

    async def storage(self, request: Request) -> JSON:
        return await self.call("storage", lambda m: m.get_storage_info())

    async def log_trends(self, request: Request) -> JSON:
        q = query_values(request.query_params.multi_items(),
                         (Field("hours", "int", 24, ge=1, le=168),))
        return await self.call("log trends",
                               lambda m: sdk_overview.log_trends(m.client, q["hours"]))

    async def dashboard(self, request: Request) -> JSON:
        return await self.call("dashboard", lambda m: sdk_overview.dashboard(m, models))

    # -- management -----------------------------------------------------------------
    async def cleanup(self, request: Request) -> JSON:
        b = body_values(await _body(request, "model_attributes_type"), CLEANUP)
        tables = _tables(b["data_types"], b["dry_run"])

        def clean(m):
            counts = m.cleanup_old_data(retention_days=b["retention_days"], dry_run=b["dry_run"])
            counts = {t: n for t, n in counts.items() if tables is None or t in tables}
            return {"status": "success", "action": "would delete" if b["dry_run"] else "deleted",
                    "deleted_counts": counts, "dry_run": b["dry_run"]}
        return await self.call("cleanup", clean)

    async def optimize(self, request: Request) -> JSON:
        dict_body(await _body(request, "model_attributes_type"), "model_attributes_type")
        return await self.call("optimize", lambda m: {
            "status": "success", "optimization_result": m.optimize_database()})

    async def flush(self, request: Request) -> JSON:
        def flush(m):
            m.force_flush()
            return {"status": "success", "message": "Buffer flushed successfully"}
        return await self.call("flush", flush)

    async def health(self, request: Request) -> JSON:
        """200 always: ``healthy`` with the size and count, else ``unhealthy`` and why."""
        def check(m):
            info = m.get_storage_info()
            return {"status": "healthy", "database_size_mb": info.total_size_mb,
                    "total_records": sum((info.record_counts or {}).values()),
                    "timestamp": datetime.now().isoformat()}
        try:
            return JSON(await self.run(check))
        except Exception as exc:
            log.error("health check failed: %s", exc)
            return JSON({"status": "unhealthy", "error": str(exc) or type(exc).__name__,
                         "timestamp": datetime.now().isoformat()})

    def routes(self) -> list[Route]:
        table = (("GET", "/logs", self.logs), ("GET", "/logs/recent", self.recent_logs),
                 ("GET", "/logs/search", self.search_logs),
                 ("POST", "/logs/custom", self.custom_log),
                 ("GET", "/metrics", self.metrics), ("GET", "/metrics/recent", self.recent_metrics),
                 ("GET", "/stats", self.stats), ("GET", "/storage", self.storage),
                 ("GET", "/trends/logs", self.log_trends), ("GET", "/dashboard", self.dashboard),
                 ("POST", "/cleanup", self.cleanup), ("POST", "/optimize", self.optimize),
                 ("POST", "/flush", self.flush), ("GET", "/health", self.health))
        return [Route(path, _validated(fn), methods=[method]) for method, path, fn in table]


async def _body(request: Request, obj_type: str):
    return parse_body(await request.body(), request.headers.get("content-type", ""), obj_type)


def _validated(handler):
    async def endpoint(request: Request):
        try:
            return await handler(request)
        except Invalid as exc:
            return JSON({"detail": exc.detail}, status_code=422)
    return endpoint


async def _http_error(request: Request, exc: HTTPException) -> JSON:
    """Not Found, Method Not Allowed: FastAPI's ``{"detail": ...}``."""
    return JSON({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def sdk_routes(manager=None, *, token: str | None = None, auth=None,
               allow_unauthenticated: bool = False, allowed_origins=(),
               allowed_hosts=LOOPBACK_HOSTS, max_body: int = MAX_BODY_BYTES) -> Starlette:
    """The SDK router's 14 routes as an ASGI app to mount (see the module).
    ``manager``: a ``HistoryDatabaseManager`` (default: one on ``database/history.db``,
    made at the first request). ``token`` / ``auth`` / ``allow_unauthenticated``,
    ``allowed_hosts`` and ``allowed_origins`` as for ``create_app``."""
    checker = request_check(token, auth, allow_unauthenticated, "sdk_routes")
    handlers = SdkRoutes(manager)
    app = Starlette(routes=handlers.routes(), exception_handlers={HTTPException: _http_error},
                    middleware=[Middleware(GuardMiddleware, allowed_hosts=allowed_hosts,
                                           allowed_origins=allowed_origins, auth=checker,
                                           max_body=max_body)])
    app.state.sdk_routes = handlers
    return app
