"""sdk_routes(): the SDK router's 14 routes, mounted in a FastAPI app, over a real daemon.

The manager is ``linkband_history.sdk.HistoryDatabaseManager`` connected to a real
daemon serving a database file in the test's directory; the records are stored with the
SDK-shaped pydantic models of ``sdk_models``; every reply is validated against
pydantic models of the SDK's reply shapes that refuse unknown fields. Bad parameters
are judged against FastAPI itself: a FastAPI router declared like the SDK's answers
the same requests, and the two ``detail`` lists must agree.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any, Dict, List, Optional

import pytest

pytest.importorskip("starlette", reason="the SDK routes need the [http] extra")
fastapi = pytest.importorskip("fastapi", reason="the SDK routes are tested mounted in FastAPI")

from fastapi import FastAPI, Query  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import sdk_models as sdk  # noqa: E402
from linkband_history.sdk import HistoryDatabaseManager  # noqa: E402
from linkband_historyd.harness import DaemonProcess  # noqa: E402
from linkband_historyd.http.sdk_routes import sdk_routes  # noqa: E402

TOKEN = "sdk-token-" + "y" * 24
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SDK = "/history/history"                      # where the SDK's own router answers
NOW = datetime.now().replace(microsecond=0)
ROUTES = (("GET", "/logs"), ("GET", "/logs/recent"), ("GET", "/logs/search?search_text=x"),
          ("POST", "/logs/custom?level=INFO&message=x"), ("GET", "/metrics"),
          ("GET", "/metrics/recent"), ("GET", "/stats"), ("GET", "/storage"),
          ("GET", "/trends/logs"), ("GET", "/dashboard"), ("POST", "/cleanup"),
          ("POST", "/optimize"), ("POST", "/flush"), ("GET", "/health"))


# -- the SDK's reply shapes, strict -------------------------------------------------

class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Log(sdk.SystemLog):
    model_config = ConfigDict(extra="forbid")


class Metric(sdk.SystemMetric):
    model_config = ConfigDict(extra="forbid")


class Alert(sdk.AlertHistory):
    model_config = ConfigDict(extra="forbid")


class Stats(sdk.HistoryStats):
    model_config = ConfigDict(extra="forbid")


class Storage(sdk.StorageInfo):
    model_config = ConfigDict(extra="forbid")


class Status(Strict):
    status: str
    message: str


class Trend(Strict):
    trend_direction: str
    trend_strength: float = Field(ge=0, le=1)
    anomalies: List[Dict[str, Any]]
    forecast: Optional[List[Dict[str, Any]]] = None
    correlation: Optional[Dict[str, float]] = None
    summary: str


class Dashboard(Strict):
    overview: Dict[str, Any]
    recent_metrics: List[Metric]
    recent_logs: List[Log]
    recent_alerts: List[Alert]
    performance_summary: Dict[str, Any]
    trends: List[Trend]
    health_score: float


class Cleanup(Strict):
    status: str
    action: str
    deleted_counts: Dict[str, int]
    dry_run: bool


class Optimize(Strict):
    status: str
    optimization_result: Dict[str, Any]


class Health(Strict):
    status: str
    database_size_mb: float
    total_records: int
    timestamp: datetime


LOGS = TypeAdapter(List[Log])
METRICS = TypeAdapter(List[Metric])


# -- a manager with the SDK's records, and the app -----------------------------------

def _records(m) -> None:
    """12 logs over the last 3 hours (Korean and English), 6 metrics, 2 alerts, and one
    log and one metric 40 days old (for cleanup)."""
    loggers = ("app.api", "app.core.device_manager", "uvicorn")
    texts = ("디바이스 연결이 끊어졌습니다", "Stream STARTED at 250 Hz", "재연결 시도 중",
             "Buffer overflow on EEG")
    for i in range(12):
        m.store_log(sdk.SystemLog(timestamp=NOW - timedelta(minutes=15 * i),
                                  level=(sdk.LogLevel.INFO, sdk.LogLevel.ERROR,
                                         sdk.LogLevel.WARNING)[i % 3],
                                  logger_name=loggers[i % 3], message=f"{texts[i % 4]} #{i}",
                                  module=("router", "manager")[i % 2], line_number=i,
                                  extra_data={"i": i} if i % 2 else None))
    for i in range(6):
        m.store_metric(sdk.SystemMetric(timestamp=NOW - timedelta(minutes=10 * i),
                                        metric_type=(sdk.MetricType.CPU, sdk.MetricType.MEMORY)[i % 2],
                                        metric_name=("cpu_usage_percent", "memory_usage_percent")[i % 2],
                                        value=10.0 + i, unit="%", tags={"host": "a"}))
    for i in range(2):
        m.store_alert(sdk.AlertHistory(timestamp=NOW - timedelta(minutes=5 + i), alert_id=f"al{i}",
                                       level=sdk.LogLevel.WARNING, category=sdk.AlertCategory.SENSOR,
                                       title=f"배터리 부족 {i}", source_component="device"))
    m.store_log(sdk.SystemLog(timestamp=NOW - timedelta(days=40), level=sdk.LogLevel.INFO,
                              logger_name="old", message="old line"))
    m.store_metric(sdk.SystemMetric(timestamp=NOW - timedelta(days=40),
                                    metric_type=sdk.MetricType.DISK,
                                    metric_name="disk_usage_percent", value=50.0))
    m.force_flush()


def _manager(daemon) -> HistoryDatabaseManager:
    return HistoryDatabaseManager(str(daemon.db_path), ingest=daemon.ingest, query=daemon.query)


@pytest.fixture(scope="module")
def manager(tmp_path_factory):
    """One daemon and manager for the tests that only read."""
    d = DaemonProcess(tmp_path_factory.mktemp("sdk-routes"),
                      env={"LINKBAND_HISTORY_COLLECTOR": "false"}).start()
    m = _manager(d)
    _records(m)
    yield m
    m.close()
    d.close()


def _client(app) -> TestClient:
    return TestClient(app, base_url="http://localhost")      # a loopback Host, as the guard wants


@pytest.fixture(scope="module")
def api(manager):
    host = FastAPI()
    host.mount(SDK, sdk_routes(manager, token=TOKEN))
    with _client(host) as c:
        c.headers.update(AUTH)
        yield c


def get(api, path, **params):
    r = api.get(SDK + path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# -- the routes -----------------------------------------------------------------------

def test_logs_come_back_newest_first_as_the_sdk_models_with_naive_local_times(api):
    logs = LOGS.validate_python(get(api, "/logs"))
    mine = [lg for lg in logs if lg.logger_name != "old"]
    assert len(mine) == 12 and len(logs) == 13
    assert [lg.timestamp for lg in logs] == sorted((lg.timestamp for lg in logs), reverse=True)
    assert all(lg.timestamp.tzinfo is None for lg in logs)
    assert logs[0].timestamp == NOW and logs[0].message == "디바이스 연결이 끊어졌습니다 #0"
    assert logs[1].extra_data == {"i": 1} and logs[1].level == sdk.LogLevel.ERROR
    assert isinstance(logs[0].id, int)


def test_logs_filter_by_the_sdk_parameter_names(api):
    by = lambda **p: LOGS.validate_python(get(api, "/logs", **p))  # noqa: E731
    assert {lg.level for lg in by(levels=["ERROR", "WARNING"])} == {sdk.LogLevel.ERROR,
                                                                    sdk.LogLevel.WARNING}
    assert len(by(levels=["ERROR", "WARNING"])) == 8
    assert {lg.logger_name for lg in by(logger_names=["uvicorn"])} == {"uvicorn"}
    assert len(by(modules=["router"], logger_names=["app.api"])) == 2          # i = 0, 6
    assert [lg.line_number for lg in by(search_text="연결")] == [0, 2, 4, 6, 8, 10]
    assert [lg.line_number for lg in by(search_text="stream started")] == [1, 5, 9]
    span = by(start_time=(NOW - timedelta(minutes=45)).isoformat(), end_time=NOW.isoformat())
    assert [lg.line_number for lg in span] == [0, 1, 2, 3]                       # both ends kept
    assert [lg.line_number for lg in by(limit=3, offset=2)] == [2, 3, 4]


def test_recent_logs_are_the_last_24_hours_and_search_finds_by_substring(api):
    recent = LOGS.validate_python(get(api, "/logs/recent", limit=5, levels="INFO"))
    assert [lg.line_number for lg in recent] == [0, 3, 6, 9]
    found = LOGS.validate_python(get(api, "/logs/search", search_text="BUFFER", limit=2))
    assert [lg.line_number for lg in found] == [3, 7]


def test_metrics_and_recent_metrics_filter_by_type_and_name(api):
    metrics = METRICS.validate_python(get(api, "/metrics", metric_types="cpu"))
    assert [m.value for m in metrics] == [10.0, 12.0, 14.0]
    assert all(m.metric_type == sdk.MetricType.CPU and m.tags == {"host": "a"} for m in metrics)
    named = METRICS.validate_python(get(api, "/metrics", metric_names="disk_usage_percent"))
    assert [m.timestamp.date() for m in named] == [(NOW - timedelta(days=40)).date()]
    recent = METRICS.validate_python(get(api, "/metrics/recent", limit=100))
    assert len(recent) == 6 and recent[0].timestamp == NOW


def test_stats_and_storage_count_every_record(api):
    stats = Stats.model_validate(get(api, "/stats"))
    assert stats.data_type_counts["logs"] == 13 and stats.data_type_counts["metrics"] == 7
    assert stats.data_type_counts["alerts"] == 2 and stats.total_records == 22
    assert stats.level_counts["ERROR"] == 4
    storage = Storage.model_validate(get(api, "/storage"))
    assert sum(storage.record_counts.values()) == 22 and storage.total_size_mb > 0


def test_log_trends_judge_the_error_rate_per_hour_as_the_sdk_does(api):
    trend = Trend.model_validate(get(api, "/trends/logs", hours=24))
    assert trend.trend_direction == "increasing" and trend.trend_strength == 1.0   # 4 of 12
    assert trend.summary == "Log analysis for last 24 hours: 12 total logs, 33.3% error rate"
    assert trend.anomalies and all(a["type"] == "high_error_rate" for a in trend.anomalies)


def test_the_dashboard_gathers_recent_records_alerts_and_a_health_score(api):
    board = Dashboard.model_validate(get(api, "/dashboard"))
    assert len(board.recent_logs) == 12 and len(board.recent_metrics) == 6
    assert [a.alert_id for a in board.recent_alerts] == ["al0", "al1"]
    assert board.overview["total_logs"] == 13 and board.trends[0].trend_direction == "increasing"
    assert 0 <= board.health_score <= 100


def test_health_and_optimize_answer_the_sdk_shapes(api):
    health = Health.model_validate(get(api, "/health"))
    assert health.status == "healthy" and health.total_records == 22
    assert health.timestamp.tzinfo is None
    r = api.post(SDK + "/optimize", json={"vacuum_database": True})
    assert r.status_code == 200, r.text
    assert Optimize.model_validate(r.json()).status == "success"


def test_mounted_at_history_the_routes_answer_at_the_front_ends_urls(manager):
    host = FastAPI()
    host.mount("/history", sdk_routes(manager, token=TOKEN))
    with _client(host) as c:
        r = c.get("/history/logs", params={"limit": 2}, headers=AUTH)
    assert r.status_code == 200 and len(LOGS.validate_python(r.json())) == 2


# -- the routes that change the store (each on a database of its own) ------------------

@pytest.fixture
def fresh(daemon):
    """(api, manager) on a daemon of its own holding the records of ``_records``."""
    m = _manager(daemon)
    _records(m)
    host = FastAPI()
    host.mount(SDK, sdk_routes(m, token=TOKEN))
    with _client(host) as c:
        c.headers.update(AUTH)
        yield c, m
    m.close()


def test_a_custom_log_is_stored_with_its_extra_data_and_flush_commits_it(fresh):
    api, _ = fresh
    r = api.post(SDK + "/logs/custom", params={"level": "CRITICAL", "message": "수동 기록 custom",
                                                "module": "ops"}, json={"ticket": 7})
    assert r.status_code == 200 and Status.model_validate(r.json()).status == "success"
    assert Status.model_validate(api.post(SDK + "/flush").json()).message == \
        "Buffer flushed successfully"
    (entry,) = LOGS.validate_python(get(api, "/logs/search", search_text="수동 기록"))
    assert (entry.level, entry.logger_name, entry.module, entry.extra_data) == \
        (sdk.LogLevel.CRITICAL, "api", "ops", {"ticket": 7})
    assert entry.process_id == os.getpid()


def test_cleanup_is_a_dry_run_by_default_and_deletes_only_when_told(fresh):
    api, _ = fresh
    for body in ({"json": {}}, {}):                          # {} and no body at all
        r = api.post(SDK + "/cleanup", **body)
        assert r.status_code == 200, r.text
        dry = Cleanup.model_validate(r.json())
        assert (dry.dry_run, dry.action) == (True, "would delete")
        assert sum(dry.deleted_counts.values()) == 2                 # the 40-day-old log and metric
    assert len(get(api, "/logs", limit=1000)) == 13                  # nothing deleted
    r = api.post(SDK + "/cleanup", json={"retention_days": 30, "dry_run": False})
    done = Cleanup.model_validate(r.json())
    assert (done.dry_run, done.action, sum(done.deleted_counts.values())) == (False, "deleted", 2)
    assert all(lg.logger_name != "old" for lg in LOGS.validate_python(get(api, "/logs")))
    assert Stats.model_validate(get(api, "/stats")).total_records == 20


def test_cleanup_data_types_limit_a_dry_run_and_a_partial_deletion_is_refused(fresh):
    api, _ = fresh
    r = api.post(SDK + "/cleanup", json={"data_types": ["logs", "system_metrics"]})
    assert Cleanup.model_validate(r.json()).deleted_counts == {"system_logs": 1, "system_metrics": 1}
    for body in ({"data_types": ["logs"], "dry_run": False}, {"data_types": ["eeg"]}):
        r = api.post(SDK + "/cleanup", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "data_types"]
    assert len(get(api, "/logs", limit=1000)) == 13                  # nothing deleted


def test_a_store_that_does_not_answer_is_a_500_detail_and_health_stays_200(tmp_path):
    down = DaemonProcess(tmp_path / "down")                            # never started
    m = HistoryDatabaseManager(str(down.db_path), ingest=down.ingest, query=down.query,
                               query_timeout=0.5, flush_timeout=0.5)
    host = FastAPI()
    host.mount(SDK, sdk_routes(m, allow_unauthenticated=True))
    try:
        with _client(host) as c:
            r = c.get(SDK + "/stats")
            assert r.status_code == 500 and isinstance(r.json()["detail"], str) and r.json()["detail"]
            r = c.get(SDK + "/health")
            assert r.status_code == 200 and r.json()["status"] == "unhealthy" and r.json()["error"]
    finally:
        m.close()


# -- auth and errors ---------------------------------------------------------------------

def _call(c, method, path, **kw):
    return c.request(method, SDK + path, **kw)


def test_every_route_refuses_a_request_without_the_token(manager):
    host = FastAPI()
    host.mount(SDK, sdk_routes(manager, token=TOKEN))
    with _client(host) as c:
        for method, path in ROUTES:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                r = _call(c, method, path, headers=headers)
                assert r.status_code == 401, (method, path, r.text)
                assert r.headers["www-authenticate"] == "Bearer"


def test_the_host_apps_own_check_decides_each_request(manager):
    host = FastAPI()
    host.mount(SDK, sdk_routes(manager, auth=lambda conn: conn.headers.get("x-session") == "ok"))
    with _client(host) as c:
        assert c.get(SDK + "/health").status_code == 401
        assert c.get(SDK + "/health", headers={"x-session": "ok"}).json()["status"] == "healthy"


def test_sdk_routes_needs_a_token_an_auth_or_an_explicit_opt_out(manager):
    with pytest.raises(ValueError, match="sdk_routes: give token="):
        sdk_routes(manager)
    with pytest.raises(ValueError, match="not both"):
        sdk_routes(manager, token=TOKEN, auth=lambda conn: True)
    host = FastAPI()
    host.mount(SDK, sdk_routes(manager, allow_unauthenticated=True))
    with _client(host) as c:
        assert c.get(SDK + "/logs", params={"limit": 1}).status_code == 200


def test_state_changes_from_another_sites_page_are_refused(api):
    r = api.post(SDK + "/cleanup", json={"dry_run": False}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert len(get(api, "/logs", limit=1000)) >= 13


def test_an_unknown_route_and_a_wrong_method_answer_like_fastapi(api):
    r = api.get(SDK + "/nope")
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})
    r = api.get(SDK + "/flush")
    assert (r.status_code, r.json()) == (405, {"detail": "Method Not Allowed"})


class CleanupRequest(BaseModel):
    retention_days: int = Field(default=30, ge=1, le=365)
    data_types: Optional[List[str]] = None
    dry_run: bool = True


def fastapi_twin() -> FastAPI:
    """FastAPI itself, with the SDK router's declarations: the judge of our 422s."""
    app = FastAPI()
    limit = Query(100, ge=1, le=1000)

    @app.get("/logs")
    def logs(start_time: Optional[datetime] = Query(None), end_time: Optional[datetime] = Query(None),
             levels: Optional[List[sdk.LogLevel]] = Query(None),
             logger_names: Optional[List[str]] = Query(None), search_text: Optional[str] = Query(None),
             modules: Optional[List[str]] = Query(None), limit: int = limit,
             offset: int = Query(0, ge=0)):
        return []

    @app.get("/metrics")
    def metrics(metric_types: Optional[List[sdk.MetricType]] = Query(None), limit: int = limit,
                offset: int = Query(0, ge=0)):
        return []

    @app.get("/logs/search")
    def search(search_text: str = Query(...), limit: int = limit):
        return []

    @app.get("/trends/logs")
    def trends(hours: int = Query(24, ge=1, le=168)):
        return {}

    @app.post("/logs/custom")
    def custom(level: sdk.LogLevel, message: str, logger_name: str = "api",
               module: Optional[str] = None, extra_data: Optional[Dict[str, Any]] = None):
        return {}

    @app.post("/cleanup")
    def cleanup(cleanup_request: CleanupRequest):
        return {}
    return app


BAD = [("GET", "/logs", {"params": {"limit": 0}}), ("GET", "/logs", {"params": {"limit": 1001}}),
       ("GET", "/logs", {"params": {"limit": "abc"}}), ("GET", "/logs", {"params": {"limit": "1.5"}}),
       ("GET", "/logs", {"params": {"limit": 0, "offset": -1}}),
       ("GET", "/logs", {"params": {"levels": ["INFO", "info"]}}),
       ("GET", "/logs", {"params": {"start_time": "yesterday"}}),
       ("GET", "/logs", {"params": {"end_time": "2026-13-01"}}),
       ("GET", "/metrics", {"params": {"metric_types": "gpu"}}),
       ("GET", "/logs/search", {}), ("GET", "/trends/logs", {"params": {"hours": 169}}),
       ("POST", "/logs/custom", {}), ("POST", "/logs/custom", {"params": {"level": "LOUD", "message": "m"}}),
       ("POST", "/logs/custom", {"params": {"level": "INFO", "message": "m"}, "json": [1]}),
       ("POST", "/logs/custom", {"params": {"level": "INFO", "message": "m"}, "content": b"{x",
                                 "headers": {"Content-Type": "application/json"}}),
       ("POST", "/cleanup", {"json": {"retention_days": 0, "dry_run": "maybe"}}),
       ("POST", "/cleanup", {"json": {"retention_days": 366, "data_types": "logs"}}),
       ("POST", "/cleanup", {"json": {"retention_days": 2.5, "data_types": [1]}}),
       ("POST", "/cleanup", {"json": []})]
GOOD = [("GET", "/logs", {"params": {"limit": "+5", "offset": "1.0"}}),
        ("GET", "/logs", {"params": {"start_time": "1700000000", "end_time": "2099-01-01"}}),
        ("GET", "/logs", {"params": {"start_time": "2026-01-01T10:00:00Z", "levels": ["INFO", "ERROR"]}}),
        ("GET", "/logs/search", {"params": {"search_text": ""}}),
        ("POST", "/cleanup", {"json": {"retention_days": "400", "dry_run": "yes"}}),
        ("POST", "/cleanup", {"json": {"retention_days": 5.0, "unknown": 1, "data_types": None}})]


def _comparable(entry: dict) -> dict:
    """pydantic's datetime messages name the exact fault; the type and place must agree."""
    if entry["type"].startswith("datetime"):
        return {k: entry[k] for k in ("type", "loc", "input")}
    return entry


def test_bad_parameters_get_the_422_detail_fastapi_gives(api):
    with _client(fastapi_twin()) as twin:
        for method, path, kw in BAD:
            want = twin.request(method, path, **kw)
            got = api.request(method, SDK + path, **kw)
            assert (want.status_code, got.status_code) == (422, 422), (path, kw, got.text)
            assert [_comparable(e) for e in got.json()["detail"]] == \
                [_comparable(e) for e in want.json()["detail"]], (path, kw)
        for method, path, kw in GOOD:
            want = twin.request(method, path, **kw)
            got = api.request(method, SDK + path, **kw)
            if path == "/cleanup" and kw["json"]["retention_days"] == "400":
                assert want.status_code == got.status_code == 422, got.text     # over 365
                continue
            assert want.status_code == got.status_code == 200, (path, kw, got.text)
