"""Elasticsearch log source: fixed query templates, PIT paging, and every failure as a gap.

The real ``elasticsearch`` client talks HTTP to tests/fakes/elasticsearch.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import elasticsearch
import pytest
from elasticsearch import Elasticsearch, helpers

from bot import metrics
from bot.adapters.elasticsearch import ElasticsearchLogSource
from bot.adapters.logfiles import FileLogSource
from bot.domain import Alert, EvidencePart
from bot.logsource import build_log_source, window_for
from bot.redaction import build_redactor
from bot.settings import Settings
from tests.fakes.elasticsearch import FakeElasticsearch

AT = datetime(2026, 11, 28, 14, 5, tzinfo=UTC)


def _alert(labels: dict[str, str] | None = None) -> Alert:
    return Alert(name="CheckoutHighErrorRate", starts_at=AT, fingerprint="f",
                 labels={"service": "checkout", "namespace": "shop", "job": "checkout",
                         "severity": "critical"} if labels is None else labels)


def _docs(n: int, *, start: datetime, every_s: float, level: str = "info",
          message: str = "GET /api/v1/cart/{i} completed status=200",
          service: str = "checkout") -> list[dict[str, Any]]:
    return [{"@timestamp": (start + timedelta(seconds=i * every_s)).isoformat(),
             "log": {"level": level}, "message": message.format(i=i),
             "service": {"name": service}, "kubernetes": {"namespace": "shop"},
             "trace": {"id": f"{i:032x}"}} for i in range(n)]


def _source(fake: FakeElasticsearch, **overrides: Any) -> ElasticsearchLogSource:
    settings = Settings(es_hosts=[fake.url], **overrides)
    source = build_log_source(settings)
    assert isinstance(source, ElasticsearchLogSource)
    return source


def _collect(fake: FakeElasticsearch, alert: Alert | None = None,
             **overrides: Any) -> EvidencePart:
    source = _source(fake, **overrides)
    try:
        return source.collect(alert or _alert())
    finally:
        source.close()


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    with FakeElasticsearch() as server:
        yield server


# --- wiring ----------------------------------------------------------------

def test_builder_picks_elasticsearch_only_when_hosts_are_set(fake: FakeElasticsearch) -> None:
    assert isinstance(build_log_source(Settings()), FileLogSource)
    source = _source(fake)
    source.close()


# --- query templates -------------------------------------------------------

def test_labels_become_terms_filters_through_the_label_map(fake: FakeElasticsearch) -> None:
    source = _source(fake)
    try:
        filters = source.base_filters(_alert())
        # service and job both map to service.name: one terms filter, one value.
        assert filters == [{"terms": {"kubernetes.namespace": ["shop"]}},
                           {"terms": {"service.name": ["checkout"]}}]
        assert source.base_filters(_alert({"job": "api", "service": "checkout"})) == [
            {"terms": {"service.name": ["api", "checkout"]}}]
        assert source.base_filters(_alert({"alertname": "X", "severity": "page"})) == []
    finally:
        source.close()


def test_label_and_field_maps_are_settings(fake: FakeElasticsearch) -> None:
    source = _source(fake, es_label_fields={"app": "labels.app"},
                     es_fields={"level": "severity_text", "timestamp": "ts"})
    try:
        alert = _alert({"app": "checkout", "service": "ignored"})
        assert source.base_filters(alert) == [{"terms": {"labels.app": ["checkout"]}}]
        window = window_for(alert, before_s=900, after_s=300, baseline_s=3600)
        body = source.lines_query(alert, window.start, window.end, errors_only=True)
        ranges = [f for f in body["query"]["bool"]["filter"] if "range" in f]
        assert list(ranges[0]["range"]) == ["ts"]
        levels = next(f["terms"]["severity_text"] for f in body["query"]["bool"]["filter"]
                      if "terms" in f and "severity_text" in f["terms"])
        assert "ERROR" in levels and "error" in levels and "FATAL" in levels
        assert body["sort"] == [{"ts": {"order": "asc"}}]
    finally:
        source.close()


def test_window_and_baseline_ranges_follow_the_settings(fake: FakeElasticsearch) -> None:
    source = _source(fake, log_window_before_s=600, log_window_after_s=120, log_baseline_s=1800)
    try:
        window = window_for(_alert(), before_s=600, after_s=120, baseline_s=1800)
        body = source.volume_query(_alert(), window)
        outer = body["query"]["bool"]["filter"][0]["range"]["@timestamp"]
        assert outer["gte"] == "2026-11-28T13:25:00.000Z"
        assert outer["lt"] == "2026-11-28T14:07:00.000Z"
        win = body["aggs"]["window"]["filter"]["range"]["@timestamp"]
        assert (win["gte"], win["lt"]) == ("2026-11-28T13:55:00.000Z", "2026-11-28T14:07:00.000Z")
        base = body["aggs"]["baseline"]["filter"]["range"]["@timestamp"]
        assert (base["gte"], base["lt"]) == ("2026-11-28T13:25:00.000Z",
                                             "2026-11-28T13:55:00.000Z")
        hist = body["aggs"]["window"]["aggs"]["over_time"]["date_histogram"]
        assert hist["fixed_interval"] == "30s"
    finally:
        source.close()


def test_aggregations_count_the_whole_window_even_when_reading_is_capped(
        fake: FakeElasticsearch) -> None:
    start = AT - timedelta(minutes=15)
    fake.seed("logs-a", _docs(3000, start=start, every_s=0.3))
    fake.seed("logs-a", _docs(50, start=AT, every_s=2, level="ERROR",
                              message="HikariPool-1 - Connection is not available {i}"))
    fake.seed("logs-a", _docs(100, start=start, every_s=1, service="frontend"))
    part = _collect(fake, log_max_lines=400)
    summary = part.items[0]
    assert summary.count == 3050 == part.stats["window_total"]
    assert "ERROR 50" in summary.text
    assert part.stats["capped"] is True and part.stats["lines"] <= 400
    pool = next(i for i in part.items if "HikariPool" in i.title)
    assert pool.count == 50 and pool.level == "error"


# --- paging ----------------------------------------------------------------

def test_large_windows_page_with_search_after_over_a_point_in_time(
        fake: FakeElasticsearch) -> None:
    fake.seed("logs-a", _docs(950, start=AT - timedelta(minutes=10), every_s=0.5))
    settings = Settings(es_hosts=[fake.url])
    client = Elasticsearch(fake.url)
    source = ElasticsearchLogSource(client=client, settings=settings,
                                    redactor=build_redactor(settings), page_size=200)
    try:
        part = source.collect(_alert())
    finally:
        source.close()
    assert part.stats["lines"] == 950
    paths = [(m, p) for m, p, _ in fake.requests]
    assert ("POST", "/logs-*/_pit") in paths and ("DELETE", "/_pit") in paths
    pages = [b for m, p, b in fake.requests if p == "/_search" and "pit" in b]
    assert len(pages) == 5  # 200 * 4 + 150
    assert "search_after" not in pages[0]
    afters = [tuple(b["search_after"]) for b in pages[1:]]
    assert afters == sorted(afters) and len(set(afters)) == 4
    assert all(b["sort"][-1] == {"_shard_doc": "asc"} for b in pages)
    assert fake.store.pits == {}  # closed


def test_small_windows_need_one_request_and_no_pit(fake: FakeElasticsearch) -> None:
    fake.seed("logs-a", _docs(30, start=AT - timedelta(minutes=5), every_s=5))
    part = _collect(fake)
    assert part.stats["lines"] == 30
    assert not any(p.endswith("/_pit") for _, p, _ in fake.requests)


# --- failures as data ------------------------------------------------------

def _assert_gap(part: EvidencePart, phrase: str, *, index: str = "logs-*") -> None:
    assert part.items == ()
    assert len(part.gaps) == 1
    gap = part.gaps[0]
    assert phrase in gap.error
    assert gap.source == f"elasticsearch:{index}"
    assert "Traceback" not in gap.error
    assert gap.query is not None
    request_line, body = gap.query.split("\n", 1)
    assert request_line == f"POST /{index}/_search"
    sent = json.loads(body)
    assert sent["query"]["bool"]["filter"][1] == {"terms": {"kubernetes.namespace": ["shop"]}}


@pytest.mark.parametrize(("status", "phrase"), [
    (429, "429 es_rejected_execution_exception"),
    (503, "503 search_phase_execution_exception: all shards failed"),
])
def test_overload_and_unavailable_become_gaps(fake: FakeElasticsearch, status: int,
                                               phrase: str) -> None:
    labels = {"backend": "elasticsearch", "operation": "search"}
    before = metrics.sample("hotwash_backend_errors_total", labels)
    fake.fail(status)
    _assert_gap(_collect(fake), phrase)
    assert metrics.sample("hotwash_backend_errors_total", labels) == before + 1
    fake.clear_faults()
    fake.seed("logs-a", _docs(5, start=AT, every_s=1))
    assert _collect(fake).gaps == ()


def test_refused_credentials_become_a_gap() -> None:
    with FakeElasticsearch(api_key="right-key") as fake:
        fake.seed("logs-a", _docs(5, start=AT, every_s=1))
        _assert_gap(_collect(fake, es_api_key="wrong-key"), "refused the credentials (401")
        part = _collect(fake, es_api_key="right-key")
        assert part.gaps == () and part.stats["lines"] == 5


def test_basic_auth_is_sent() -> None:
    with FakeElasticsearch(basic_auth=("hotwash", "s3cret")) as fake:
        fake.seed("logs-a", _docs(5, start=AT, every_s=1))
        part = _collect(fake, es_username="hotwash", es_password="s3cret")
        assert part.gaps == ()


def test_missing_index_becomes_a_gap(fake: FakeElasticsearch) -> None:
    part = _collect(fake, es_log_index="logs-checkout")
    _assert_gap(part, "index not found: logs-checkout (404 index_not_found_exception",
                index="logs-checkout")


def test_a_pattern_matching_nothing_is_empty_not_an_error(fake: FakeElasticsearch) -> None:
    part = _collect(fake)
    assert part.gaps == ()
    assert part.items[0].count == 0


def test_timeout_becomes_a_gap_quickly(fake: FakeElasticsearch) -> None:
    fake.slow(3.0)
    began = time.monotonic()
    part = _collect(fake, es_timeout_s=0.3)
    assert time.monotonic() - began < 2.5
    _assert_gap(part, "did not answer within 0.3s (timeout)")


def test_a_slow_cluster_is_cut_at_the_deadline_keeping_what_was_read(
        fake: FakeElasticsearch) -> None:
    # Every page answers, slowly: without an overall deadline one collect would take
    # pages x timeout. The draft gets what was read in time, and a gap that says so.
    fake.seed("logs-a", _docs(950, start=AT - timedelta(minutes=10), every_s=0.5))
    fake.slow(0.4, when="_search")
    settings = Settings(es_hosts=[fake.url], es_timeout_s=5.0, es_deadline_s=1.5)
    source = ElasticsearchLogSource(client=Elasticsearch(fake.url), settings=settings,
                                    redactor=build_redactor(settings), page_size=200)
    began = time.monotonic()
    try:
        part = source.collect(_alert())
    finally:
        source.close()
    assert time.monotonic() - began < 3.0
    assert 200 <= part.stats["lines"] < 950 and part.items
    assert part.stats["capped"] is True
    kept = [g for g in part.gaps if "kept the" in g.error]
    assert len(kept) == 1 and "HOTWASH_ES_DEADLINE_S" in kept[0].error
    assert any("HOTWASH_ES_DEADLINE_S" in g.error for g in part.gaps if g not in kept)
    assert fake.store.pits == {}  # the point in time is still closed


def test_a_page_failing_mid_read_keeps_the_pages_before_it(fake: FakeElasticsearch) -> None:
    fake.seed("logs-a", _docs(950, start=AT - timedelta(minutes=10), every_s=0.5))
    # Two pages over the point in time answer; the third fails (retries included).
    fake.fail(503, when="/_search", after=3, times=10)  # the volume query is the 1st
    settings = Settings(es_hosts=[fake.url])
    source = ElasticsearchLogSource(client=Elasticsearch(fake.url, max_retries=1),
                                    settings=settings, redactor=build_redactor(settings),
                                    page_size=200)
    try:
        part = source.collect(_alert())
    finally:
        source.close()
    assert part.stats["lines"] == 400 and part.items
    assert any("503" in g.error and "kept the 400 lines" in g.error for g in part.gaps)


def test_unreachable_server_becomes_a_gap() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(es_hosts=[f"http://127.0.0.1:{port}"])
    source = build_log_source(settings)
    try:
        part = source.collect(_alert())
    finally:
        source.close()  # type: ignore[attr-defined]
    _assert_gap(part, f"unreachable at http://127.0.0.1:{port}")


def test_credentials_in_a_host_url_do_not_reach_the_gap() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = build_log_source(Settings(es_hosts=[f"http://hotwash:pa55word@127.0.0.1:{port}"]))
    try:
        part = source.collect(_alert())
    finally:
        source.close()  # type: ignore[attr-defined]
    assert "pa55word" not in part.model_dump_json()
    assert "unreachable" in part.gaps[0].error


def test_a_failing_trace_index_leaves_the_log_evidence(fake: FakeElasticsearch) -> None:
    fake.seed("logs-a", _docs(20, start=AT, every_s=1, level="error",
                              message="HikariPool-1 - Connection is not available"))
    fake.fail(503, when="traces-")
    part = _collect(fake)
    assert any("HikariPool" in i.title for i in part.items)
    assert len(part.gaps) == 1
    assert part.gaps[0].source == "elasticsearch:traces-*"
    assert '"trace.id"' in (part.gaps[0].query or "")


def test_server_of_the_client_major_works_an_older_one_is_a_gap() -> None:
    # The client sends compatible-with=<its major>; a server one major older refuses it
    # with a 400 (real ES does too), so use the client major that matches the server.
    client_major = int(elasticsearch.__versionstr__.split(".")[0])
    with FakeElasticsearch(major=client_major) as fake:
        fake.seed("logs-a", _docs(5, start=AT, every_s=1))
        assert _collect(fake).gaps == ()
    with FakeElasticsearch(major=client_major - 1) as fake:
        part = _collect(fake)
    assert "400 media_type_header_exception" in part.gaps[0].error


# --- the fake's faithfulness (what the real client relies on) -----------------

def test_fake_answers_like_elasticsearch(fake: FakeElasticsearch) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(fake.url.rsplit(":", 1)[1]))
    try:
        conn.request("GET", "/", headers={
            "Accept": "application/vnd.elasticsearch+json; compatible-with=8"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        assert resp.getheader("X-Elastic-Product") == "Elasticsearch"
        assert resp.getheader("Content-Type") == (
            "application/vnd.elasticsearch+json;compatible-with=8")
        conn.request("GET", "/")
        resp = conn.getresponse()
        resp.read()
        assert resp.getheader("Content-Type") == "application/json"
    finally:
        conn.close()


def test_bulk_reports_item_statuses_to_the_real_helpers(fake: FakeElasticsearch) -> None:
    client = Elasticsearch(fake.url)
    try:
        actions = [{"_op_type": "create", "_index": "logs-x", "_id": "1", "_source": {"a": 1}},
                   {"_op_type": "index", "_index": "logs-x", "_id": "2", "_source": {"a": 2}}]
        assert helpers.bulk(client, actions) == (2, [])
        ok, errors = helpers.bulk(client, actions[:1], raise_on_error=False)
        assert ok == 0 and isinstance(errors, list)
        assert errors[0]["create"]["status"] == 409
        found = client.search(index="logs-x", query={"term": {"a": 2}})
        assert found["hits"]["total"]["value"] == 1
        assert found["hits"]["hits"][0]["_id"] == "2"
    finally:
        client.close()


def test_fake_query_dsl_and_aggregations_through_the_real_client(
        fake: FakeElasticsearch) -> None:
    fake.seed("logs-a", [
        {"@timestamp": "2026-11-28T14:00:10Z", "message": "Connection refused by db",
         "log": {"level": "error"}, "event": {"duration": 5}, "service": {"name": "a"}},
        {"@timestamp": "2026-11-28T14:01:20Z", "message": "connection pool ready",
         "log": {"level": "info"}, "event": {"duration": 50}, "service": {"name": "a"}},
        {"@timestamp": "2026-11-28T14:03:00Z", "message": "disk full",
         "log": {"level": "error"}, "service": {"name": "b"}},
    ])
    client = Elasticsearch(fake.url)
    try:
        def ids(**kwargs: Any) -> list[str]:
            hits = client.search(index="logs-*", sort=[{"@timestamp": "asc"}], **kwargs)
            return [h["_source"]["message"] for h in hits["hits"]["hits"]]

        assert ids(query={"match": {"message": "CONNECTION"}}) == [
            "Connection refused by db", "connection pool ready"]
        assert ids(query={"match": {"message": {"query": "connection db",
                                                "operator": "and"}}}) == [
            "Connection refused by db"]
        # Without must/filter a should clause is required (minimum_should_match 1) ...
        assert ids(query={"bool": {"must_not": [{"term": {"log.level": "info"}}],
                                   "should": [{"exists": {"field": "event.duration"}}]}}) == [
            "Connection refused by db"]
        # ... with a filter it is optional.
        assert ids(query={"bool": {"filter": [{"terms": {"log.level": ["error"]}}],
                                   "should": [{"exists": {"field": "event.duration"}}]}}) == [
            "Connection refused by db", "disk full"]
        assert ids(query={"range": {"event.duration": {"gt": 5}}}) == ["connection pool ready"]
        assert ids(query={"range": {"@timestamp": {"gte": "2026-11-28T14:01:00Z",
                                                   "lt": "2026-11-28T14:03:00Z"}}}) == [
            "connection pool ready"]
        result = client.search(index="logs-*", size=0, aggs={
            "levels": {"terms": {"field": "log.level"}},
            "per_min": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}},
        })
        levels = {b["key"]: b["doc_count"] for b in result["aggregations"]["levels"]["buckets"]}
        assert levels == {"error": 2, "info": 1}
        minutes = [(b["key_as_string"], b["doc_count"])
                   for b in result["aggregations"]["per_min"]["buckets"]]
        assert minutes == [("2026-11-28T14:00:00.000Z", 1), ("2026-11-28T14:01:00.000Z", 1),
                           ("2026-11-28T14:02:00.000Z", 0), ("2026-11-28T14:03:00.000Z", 1)]
    finally:
        client.close()
