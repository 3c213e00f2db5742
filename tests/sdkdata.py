"""Test data shaped like what the Link Band SDK produces (shared/reference/sdk-data.md)."""
from __future__ import annotations

import random
import uuid

METRICS = [
    ("cpu", "cpu_percent", "%", 15.0, 8.0),
    ("memory", "memory_percent", "%", 76.0, 3.0),
    ("memory", "process_memory_mb", "MB", 180.0, 20.0),
    ("streaming", "eeg_sampling_rate", "Hz", 250.0, 1.0),
    ("streaming", "eeg_throughput", "samples/s", 250.0, 5.0),
    ("streaming", "total_latency", "ms", 12.5, 3.0),
    ("buffer", "buffer_usage_percent", "%", 40.0, 15.0),
    ("batch", "processing_time", "ms", 2.0, 0.5),
]

LOG_TEMPLATES = [
    ("INFO", "STREAM.eeg", "[STREAM:EEG] {n} samples broadcast to {c} clients"),
    ("INFO", "WEBSOCKET.server", "[WS_SERVER] client connected from 127.0.0.1:{port}"),
    ("INFO", "DEVICE.manager", "[DEVICE_MGR:CONNECT] BLE 연결 성공 address={mac}"),
    ("WARNING", "DEVICE.manager", "디바이스 연결이 끊어졌습니다 (address={mac})"),
    ("INFO", "DEVICE.manager", "재연결 시도 중... {n}회"),
    ("ERROR", "STREAM.ppg", "[STREAM:PPG] 버퍼 오버플로우 발생: {n} samples dropped"),
    ("INFO", "SYSTEM.monitor", "[MONITORING_BROADCAST] cpu={f}% memory={g}%"),
    ("INFO", "API.server", "[SERVER:START] Link Band SDK server started on port 8121"),
    ("ERROR", "SYSTEM.monitor", "높은 CPU 사용률 감지: CPU 사용률이 {f}%로 임계값 85.0%을 초과했습니다"),
    ("DEBUG", "STREAM.acc", "[STREAM:ACC] x={n} y={c} z={port}"),
    ("INFO", "TEST.runner", "Quick brown fox: OK id={uid}"),
    ("INFO", "API.server", "GET /device/status 200 OK"),
]


def metric(rng: random.Random, ts: float, i: int = 0) -> dict:
    mtype, name, unit, mean, sd = METRICS[i % len(METRICS)]
    return {"timestamp": ts, "metric_type": mtype, "metric_name": name,
            "value": round(rng.gauss(mean, sd), 3), "unit": unit,
            "tags": {"host": "laptop-1", "sensor": rng.choice(["eeg", "ppg", "acc"])}}


def log_message(rng: random.Random) -> tuple[str, str, str]:
    level, logger, tpl = rng.choice(LOG_TEMPLATES)
    mac = ":".join(f"{rng.randrange(256):02X}" for _ in range(6))
    msg = tpl.format(n=rng.randrange(1, 500), c=rng.randrange(1, 9), port=rng.randrange(1024, 65535),
                     mac=mac, f=round(rng.uniform(50, 99), 1), g=round(rng.uniform(50, 99), 1),
                     uid=uuid.UUID(int=rng.getrandbits(128)).hex[:8])
    return level, logger, msg


def log(rng: random.Random, ts: float) -> dict:
    level, logger, msg = log_message(rng)
    return {"timestamp": ts, "level": level, "logger_name": logger, "message": msg,
            "module": "server", "function_name": "handle", "line_number": rng.randrange(1, 900),
            "thread_id": 140000000 + rng.randrange(100), "process_id": 4242,
            "extra_data": {"sensor_type": rng.choice(["eeg", "ppg"]), "action": "stream"}}


def performance(rng: random.Random, ts: float) -> dict:
    comp, op = rng.choice([("buffer", "push"), ("batch", "flush"), ("stream", "broadcast"),
                           ("device", "read_packet")])
    return {"timestamp": ts, "component": comp, "operation": op,
            "duration_ms": round(rng.uniform(0.1, 20), 3), "throughput": round(rng.uniform(50, 300), 2),
            "efficiency_percent": round(rng.uniform(60, 100), 1), "error_count": rng.randrange(3),
            "metadata": {"batch_size": rng.choice([10, 30, 50])}}


def alert(rng: random.Random, ts: float) -> dict:
    v = round(rng.uniform(85, 99), 1)
    return {"timestamp": ts, "alert_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "level": rng.choice(["WARNING", "ERROR", "CRITICAL"]), "category": "PERFORMANCE",
            "title": "높은 CPU 사용률 감지",
            "description": f"CPU 사용률이 {v}%로 임계값 85.0%을 초과했습니다",
            "source_component": "alert_manager",
            "metadata": {"metric_name": "cpu_percent", "current_value": v, "threshold": 85.0,
                         "suggested_actions": ["불필요한 프로그램 종료"]}}
