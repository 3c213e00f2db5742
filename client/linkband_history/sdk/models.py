"""The SDK's history models, and the two conversions between them and our records.

Inside the Link Band SDK ``app.models.history_models`` is importable and its
pydantic classes are the ones used, so callers get back exactly the types they
passed in. Anywhere else (tools, tests, a server without the SDK) plain
dataclasses of the same shape stand in, so this package never needs pydantic.

- :func:`to_wire` turns an SDK model object, any object with the same
  attributes, or a dict into a record dict for :class:`HistoryClient`: enum
  members become their ``.value``, datetimes UTC epoch seconds (a naive one is
  local time, as the SDK's ``datetime.now()`` timestamps are).
- :func:`from_row` turns one row of our query replies back into a model, with
  naive local datetimes, as the SDK's own database code returns them.
"""
from __future__ import annotations

import dataclasses
import enum
from datetime import datetime
from typing import Any

from ..protocol import FIELDS
from ..times import to_epoch

__all__ = ["MetricType", "ComponentType", "LogLevel", "AlertCategory", "SummaryType",
           "SystemMetric", "PerformanceData", "SystemLog", "AlertHistory", "DataSummary",
           "MetricQuery", "LogQuery", "HistoryStats", "StorageInfo", "model_of", "FIELDS_OF",
           "to_wire", "from_row", "local_datetime", "SDK_MODELS"]


# -- stand-in classes (used when the SDK's own are not importable) ------------

class MetricType(str, enum.Enum):
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"
    STREAMING = "streaming"
    BUFFER = "buffer"
    BATCH = "batch"


class ComponentType(str, enum.Enum):
    BUFFER = "buffer"
    BATCH = "batch"
    STREAM = "stream"
    OPTIMIZER = "optimizer"
    NETWORK = "network"
    DEVICE = "device"


class LogLevel(str, enum.Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class AlertCategory(str, enum.Enum):
    PERFORMANCE = "PERFORMANCE"
    SENSOR = "SENSOR"
    SYSTEM = "SYSTEM"
    DATA = "DATA"


class SummaryType(str, enum.Enum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


_ENUM_FIELDS = {"metric_type": MetricType, "component": ComponentType, "level": LogLevel,
                "category": AlertCategory, "summary_type": SummaryType}


def _as_enum(cls, value):
    """The member of ``cls`` for ``value``; a value outside the enum (our own
    collector's ``custom`` metric type, say) is kept as it is rather than lost."""
    if value is None or isinstance(value, cls):
        return value
    try:
        return cls(getattr(value, "value", value))
    except ValueError:
        return value


class _Model:
    """Enum fields hold members, as the SDK's pydantic models do; and the
    pydantic v2 spellings the SDK's code uses (``model_dump``) work here too."""

    def __post_init__(self):
        for name, cls in _ENUM_FIELDS.items():
            if hasattr(self, name):
                setattr(self, name, _as_enum(cls, getattr(self, name)))

    def model_dump(self, **_kw) -> dict:
        return dataclasses.asdict(self)

    dict = model_dump


_record = dataclasses.dataclass(kw_only=True)


@_record
class SystemMetric(_Model):
    metric_type: Any
    metric_name: str
    value: float
    unit: str | None = None
    tags: dict | None = None
    id: int | None = None
    timestamp: datetime = dataclasses.field(default_factory=datetime.now)
    created_at: datetime | None = None


@_record
class PerformanceData(_Model):
    component: Any
    operation: str
    duration_ms: float | None = None
    throughput: float | None = None
    efficiency_percent: float | None = None
    error_count: int = 0
    metadata: dict | None = None
    id: int | None = None
    timestamp: datetime = dataclasses.field(default_factory=datetime.now)
    created_at: datetime | None = None


@_record
class SystemLog(_Model):
    level: Any
    logger_name: str
    message: str
    module: str | None = None
    function_name: str | None = None
    line_number: int | None = None
    thread_id: int | None = None
    process_id: int | None = None
    extra_data: dict | None = None
    id: int | None = None
    timestamp: datetime = dataclasses.field(default_factory=datetime.now)
    created_at: datetime | None = None


@_record
class AlertHistory(_Model):
    alert_id: str
    level: Any
    category: Any
    title: str
    description: str | None = None
    source_component: str | None = None
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None
    metadata: dict | None = None
    id: int | None = None
    timestamp: datetime = dataclasses.field(default_factory=datetime.now)
    created_at: datetime | None = None


@_record
class DataSummary(_Model):
    summary_type: Any
    data_type: str
    summary_data: dict
    id: int | None = None
    timestamp: datetime = dataclasses.field(default_factory=datetime.now)
    created_at: datetime | None = None


def _check_page(query) -> None:
    if not 1 <= query.limit <= 1000:
        raise ValueError(f"limit must be 1 to 1000, not {query.limit!r}")
    if query.offset < 0:
        raise ValueError(f"offset must be 0 or more, not {query.offset!r}")


@_record
class MetricQuery(_Model):
    start_time: datetime | None = None
    end_time: datetime | None = None
    metric_types: list | None = None
    metric_names: list | None = None
    aggregation: str | None = None
    group_by: str | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self):
        _check_page(self)


@_record
class LogQuery(_Model):
    start_time: datetime | None = None
    end_time: datetime | None = None
    levels: list | None = None
    logger_names: list | None = None
    search_text: str | None = None
    modules: list | None = None
    limit: int = 100
    offset: int = 0

    def __post_init__(self):
        _check_page(self)


@_record
class HistoryStats(_Model):
    total_records: int
    date_range: dict
    data_type_counts: dict
    level_counts: dict
    component_counts: dict
    storage_size_mb: float


@_record
class StorageInfo(_Model):
    total_size_mb: float
    data_type_sizes: dict
    oldest_record: datetime | None = None
    newest_record: datetime | None = None
    record_counts: dict = dataclasses.field(default_factory=dict)
    compression_ratio: float | None = None


_NAMES = ("MetricType", "ComponentType", "LogLevel", "AlertCategory", "SummaryType",
          "SystemMetric", "PerformanceData", "SystemLog", "AlertHistory", "DataSummary",
          "MetricQuery", "LogQuery", "HistoryStats", "StorageInfo")


def _sdk_classes() -> bool:
    """Put the SDK's own classes in this module's place when the SDK is there."""
    try:
        from app.models import history_models as sdk   # type: ignore[import-not-found]
    except Exception:           # not inside the SDK (or its models fail to import)
        return False
    found = {name: getattr(sdk, name, None) for name in _NAMES}
    if any(cls is None for cls in found.values()):
        return False
    globals().update(found)
    _ENUM_FIELDS.update(metric_type=found["MetricType"], component=found["ComponentType"],
                        level=found["LogLevel"], category=found["AlertCategory"],
                        summary_type=found["SummaryType"])
    return True


SDK_MODELS = _sdk_classes()      # True: the classes above are the SDK's own


# -- conversions ---------------------------------------------------------------

FIELDS_OF: dict[str, tuple[str, ...]] = {
    **FIELDS,                          # the wire's fields of the four record kinds
    "summary": ("timestamp", "summary_type", "data_type", "summary_data"),
}
_TIMES = ("timestamp", "acknowledged_at", "resolved_at")
_NOT_SENT = frozenset({"id", "created_at"})      # the store gives both


def model_of(kind: str):
    """The model class of ``kind`` (the SDK's when it is importable)."""
    return globals()[_MODEL_NAMES[kind]]


_MODEL_NAMES = {"metric": "SystemMetric", "performance": "PerformanceData", "log": "SystemLog",
                "alert": "AlertHistory", "summary": "DataSummary"}


def _wire_value(value):
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return to_epoch(value)
    return value


def to_wire(kind: str, obj) -> dict:
    """``obj`` (an SDK model, an object with its attributes, or a dict) as a
    record dict of ``kind`` for :class:`HistoryClient`. A dict keeps keys
    beyond the kind's fields (the client puts them into the JSON field); an
    object gives only its fields. ``id`` and ``created_at`` are never sent."""
    if kind not in FIELDS_OF:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(FIELDS_OF)}")
    if isinstance(obj, dict):
        items = obj.items()
    else:
        missing = object()
        items = ((f, getattr(obj, f, missing)) for f in FIELDS_OF[kind])
        items = [(f, v) for f, v in items if v is not missing]
    out = {}
    for key, value in items:
        if key in _NOT_SENT:
            continue
        if key in _TIMES and value is not None and not isinstance(value, datetime):
            value = to_epoch(value)
        out[key] = _wire_value(value)
    return out


def local_datetime(epoch) -> datetime | None:
    """UTC epoch seconds as the naive local datetime the SDK's code expects."""
    return None if epoch is None else datetime.fromtimestamp(epoch)


def from_row(kind: str, row: dict):
    """One row of our replies (epoch timestamps, JSON fields decoded) as a model
    object of ``kind`` with naive local datetimes."""
    fields = FIELDS_OF[kind]
    values: dict = {f: row.get(f) for f in fields}
    if kind == "summary" and values["timestamp"] is None:
        values["timestamp"] = row.get("period_start")
    for f in _TIMES:
        if f in values:
            values[f] = local_datetime(values[f])
    if kind == "performance" and values["error_count"] is None:
        values["error_count"] = 0
    values["id"] = row.get("id")
    values["created_at"] = local_datetime(row["created_at"]) if row.get("created_at") else None
    return build(model_of(kind), values)


def build(cls, values: dict):
    """``cls(**values)``; for a pydantic class whose validation refuses a stored
    value (a metric type outside the SDK's enum), the object is built unvalidated
    rather than the row lost."""
    try:
        return cls(**values)
    except Exception:
        construct = getattr(cls, "model_construct", None)
        if construct is None:
            raise
        return construct(**values)
