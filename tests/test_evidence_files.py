"""The file log source: plain text lines with a timestamp prefix, NDJSON shapes, gaps."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from bot.adapters.logfiles import parse_text_line
from bot.domain import Alert
from bot.logsource import build_log_source, parse_timestamp
from bot.settings import Settings

AT = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)


def _alert(labels: dict[str, str] | None = None) -> Alert:
    return Alert(name="X", starts_at=AT, fingerprint="f", labels=labels or {})


def test_timestamps_in_the_shapes_logs_use() -> None:
    expected = datetime(2026, 11, 28, 14, 0, 1, 123000, tzinfo=UTC)
    for text in ("2026-11-28T14:00:01.123Z", "2026-11-28 14:00:01,123",
                 "2026-11-28T15:00:01.123+01:00", "2026-11-28T14:00:01.123456789Z"):
        parsed = parse_timestamp(text)
        assert parsed is not None and abs((parsed - expected).total_seconds()) < 0.001, text
    assert parse_timestamp(1795874401123) == expected
    assert parse_timestamp("yesterday") is None


def test_plain_text_lines_give_level_and_message() -> None:
    line = parse_text_line("2026-11-28 14:00:01,123 [ERROR] HikariPool-1 - Connection is not "
                           "available")
    assert line is not None and line.level == "ERROR"
    assert line.message == "HikariPool-1 - Connection is not available"
    line = parse_text_line("[2026-11-28T14:00:01Z] warn: disk almost full")
    assert line is not None and line.level == "warn" and line.message == "disk almost full"
    assert parse_text_line("    at com.zaxxer.hikari.pool.HikariPool.getConnection") is None


def test_plain_text_files_are_condensed_like_ndjson(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = [f"2026-11-28T13:{m:02d}:00Z INFO request {m} served in {m}ms" for m in range(0, 59)]
    lines += [f"2026-11-28T14:0{s}:00Z ERROR payment gateway refused connection to 10.0.0.{s}"
              for s in range(1, 9)]
    lines.insert(5, "    a continuation line without a timestamp is skipped")
    log.write_text("\n".join(lines) + "\n")
    part = build_log_source(Settings(log_files=[log])).collect(
        _alert({"service": "checkout"}))  # no fields in plain text: labels cannot exclude
    assert part.gaps == ()
    new = [i for i in part.items if i.is_new]
    assert len(new) == 1 and new[0].level == "error" and new[0].count == 8
    assert part.stats["baseline_lines"] == 50  # 12:50-13:50 holds 13:00..13:49


def test_flattened_dotted_keys_and_custom_fields(tmp_path: Path) -> None:
    log = tmp_path / "svc.ndjson"
    rows = [{"ts": f"2026-11-28T14:0{i}:00Z", "severity": "error", "msg": "queue full",
             "service.name": "checkout"} for i in range(5)]
    rows.append({"ts": "2026-11-28T14:01:00Z", "severity": "error", "msg": "other service",
                 "service.name": "billing"})
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json {\n")
    settings = Settings(log_files=[log], es_fields={"timestamp": "ts", "level": "severity",
                                                    "message": "msg"})
    part = build_log_source(settings).collect(_alert({"service": "checkout"}))
    template = part.items[1]
    assert template.count == 5 and template.level == "error" and "queue full" in template.text
    assert "other service" not in part.model_dump_json()


def test_a_missing_log_path_is_a_gap(tmp_path: Path) -> None:
    part = build_log_source(Settings(log_files=[tmp_path / "nope"])).collect(_alert())
    assert len(part.gaps) == 1
    assert "log path not found" in part.gaps[0].error
    assert json.loads(part.gaps[0].query or "{}")["paths"] == [str(tmp_path / "nope")]
