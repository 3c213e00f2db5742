"""Stand-ins for the Link Band SDK's pydantic v2 history models (``app/models/history_models.py``).

Written from ``shared/reference/sdk-history-api.md`` (fields, enums, defaults,
bounds), so the tests drive ``linkband_history.sdk`` with objects shaped like
the ones the SDK's code passes and expects back. Not the SDK's code.
"""
from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, Field


class MetricType(str, Enum):
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    NETWORK = "network"
    STREAMING = "streaming"
    BUFFER = "buffer"
    BATCH = "batch"


class ComponentType(str, Enum):
    BUFFER = "buffer"
    BATCH = "batch"
    STREAM = "stream"
    OPTIMIZER = "optimizer"
    NETWORK = "network"
    DEVICE = "device"


class LogLevel(str, Enum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class AlertCategory(str, Enum):
    PERFORMANCE = "PERFORMANCE"
    SENSOR = "SENSOR"
    SYSTEM = "SYSTEM"
    DATA = "DATA"


class SummaryType(str, Enum):
    HOURLY = "hourly"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


class _Record(BaseModel):
    id: Optional[int] = None
    timestamp: datetime = Field(default_factory=datetime.now)
    created_at: Optional[datetime] = None


class SystemMetric(_Record):
    metric_type: MetricType
    metric_name: str
    value: float
    unit: Optional[str] = None
    tags: Optional[Dict[str, Any]] = None


class PerformanceData(_Record):
    component: ComponentType
    operation: str
    duration_ms: Optional[float] = None
    throughput: Optional[float] = None
    efficiency_percent: Optional[float] = None
    error_count: int = 0
    metadata: Optional[Dict[str, Any]] = None


class SystemLog(_Record):
    level: LogLevel
    logger_name: str
    message: str
    module: Optional[str] = None
    function_name: Optional[str] = None
    line_number: Optional[int] = None
    thread_id: Optional[int] = None
    process_id: Optional[int] = None
    extra_data: Optional[Dict[str, Any]] = None


class AlertHistory(_Record):
    alert_id: str
    level: LogLevel
    category: AlertCategory
    title: str
    description: Optional[str] = None
    source_component: Optional[str] = None
    acknowledged_at: Optional[datetime] = None
    resolved_at: Optional[datetime] = None
    metadata: Optional[Dict[str, Any]] = None


class DataSummary(_Record):
    summary_type: SummaryType
    data_type: str
    summary_data: Dict[str, Any]


class MetricQuery(BaseModel):
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    metric_types: Optional[List[MetricType]] = None
    metric_names: Optional[List[str]] = None
    aggregation: Optional[str] = None
    group_by: Optional[str] = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class LogQuery(BaseModel):
    start_time: Optional[datetime] = None
    end_time: Optional[datetime] = None
    levels: Optional[List[LogLevel]] = None
    logger_names: Optional[List[str]] = None
    search_text: Optional[str] = None
    modules: Optional[List[str]] = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)


class HistoryStats(BaseModel):
    total_records: int
    date_range: Dict[str, Optional[datetime]]
    data_type_counts: Dict[str, int]
    level_counts: Dict[str, int]
    component_counts: Dict[str, int]
    storage_size_mb: float


class StorageInfo(BaseModel):
    total_size_mb: float
    data_type_sizes: Dict[str, float]
    oldest_record: Optional[datetime] = None
    newest_record: Optional[datetime] = None
    record_counts: Dict[str, int]
    compression_ratio: Optional[float] = None
