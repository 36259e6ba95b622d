"""A fake Elasticsearch server on 127.0.0.1 (port 0) that the real client cannot tell apart.

It speaks the REST subset Hotwash's log source uses: ``GET /`` (info), ``PUT|POST
/_bulk`` and ``/{index}/_bulk`` (NDJSON; ``index``/``create``/``delete``, answering
``items[].<action>.status``), ``GET|POST /{index}/_search`` and ``/_search`` with a
point in time, ``POST /{index}/_pit?keep_alive=`` and ``DELETE /_pit``. Queries:
``bool`` (filter/must/should/must_not, minimum_should_match), ``range``
(gt/gte/lt/lte on dates and numbers), ``term``, ``terms``, ``match`` (lower-cased word
match, or/and), ``exists``, ``match_all``; ``sort`` with ``search_after`` (dates sort as
epoch millis, like ES), ``_shard_doc`` as the PIT tie-breaker, ``_source`` includes,
``size``/``from``, ``track_total_hits``; aggregations ``terms``, ``date_histogram``
(``fixed_interval``, ``min_doc_count``, ``extended_bounds``), ``filter`` and
``value_count``, nested. Every 2xx carries ``X-Elastic-Product: Elasticsearch``; the
content type mirrors ``compatible-with=N`` (``application/vnd.elasticsearch+json``), and a
version the server cannot serve gets the real 400 ``media_type_header_exception``.
Errors use real bodies and status codes: 401 ``security_exception`` (when an API key or
basic auth is configured and missing or wrong), 404 ``index_not_found_exception`` for a
concrete index that does not exist (a wildcard pattern matching nothing returns no hits,
as ES does), and scripted 429 ``es_rejected_execution_exception`` / 503
``search_phase_execution_exception`` / slow responses (``fail(...)``, ``slow(...)``).
Limits: one shard, no mappings (a field is a date when it is ``@timestamp``, listed in
``date_fields``, or its value parses as ISO-8601), keyword semantics for ``term``/
``terms`` and ``terms`` aggregations (no analysis, case-sensitive), no scoring (hits
score 1.0 unless sorted), no scripts, no ``query_string``, no ``collapse``, no
scroll, PIT keep-alive is not enforced, and everything lives in memory.
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

Doc = dict[str, Any]


@dataclass
class Fault:
    """A scripted failure: ``status`` for requests whose path contains ``when``."""

    status: int
    when: str | None = None
    times: int | None = None
    after: int = 0  # let this many matching requests through first


@dataclass
class Slowness:
    seconds: float
    when: str | None = None


def _error_body(status: int, index: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Real Elasticsearch error bodies for the statuses the adapter must survive."""
    headers: dict[str, str] = {}
    if status == 401:
        reason = ("unable to authenticate with provided credentials and anonymous access "
                  "is not allowed for this request")
        www = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
        cause = {"type": "security_exception", "reason": reason,
                 "header": {"WWW-Authenticate": www}}
        headers["WWW-Authenticate"] = 'Basic realm="security", charset="UTF-8"'
        return {"error": {"root_cause": [cause], **cause}, "status": 401}, headers
    if status == 404:
        name = index or "missing"
        cause = {"type": "index_not_found_exception", "reason": f"no such index [{name}]",
                 "resource.type": "index_or_alias", "resource.id": name,
                 "index_uuid": "_na_", "index": name}
        return {"error": {"root_cause": [cause], **cause}, "status": 404}, headers
    if status == 429:
        reason = ("rejected execution of org.elasticsearch.action.search.FetchSearchPhase "
                  "on EsThreadPoolExecutor[name = node-1/search, queue capacity = 1000, "
                  "task execution rejected]")
        cause = {"type": "es_rejected_execution_exception", "reason": reason}
        return {"error": {"root_cause": [cause], **cause}, "status": 429}, headers
    if status == 503:
        err = {"root_cause": [], "type": "search_phase_execution_exception",
               "reason": "all shards failed", "phase": "query", "grouped": True,
               "failed_shards": []}
        return {"error": err, "status": 503}, headers
    cause = {"type": "exception", "reason": f"scripted failure {status}"}
    return {"error": {"root_cause": [cause], **cause}, "status": status}, headers


def _parse_interval(text: str) -> int:
    """fixed_interval such as 30s, 1m, 1h, 1d -> milliseconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not m:
        raise ValueError("failed to parse setting [date_histogram.fixedInterval] "
                         f"with value [{text}]")
    unit = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]
    return int(m.group(1)) * unit


def _to_millis(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        return _iso_millis(value)
    return None


@functools.lru_cache(maxsize=262_144)
def _iso_millis(text: str) -> int | None:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return stamp + f"{ms % 1000:03d}Z"


def _get(source: Doc, path: str) -> Any:
    """Field lookup by dotted path through objects, or a flattened dotted key."""
    if path in source:
        return source[path]
    node: Any = source
    parts = path.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part in node:
            node = node[part]
            continue
        rest = ".".join(parts[i:])
        return node.get(rest)
    return node


def _values(source: Doc, path: str) -> list[Any]:
    value = _get(source, path)
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


class _Store:
    def __init__(self, date_fields: Iterable[str]) -> None:
        self.indices: dict[str, list[tuple[str, Doc]]] = {}
        self.pits: dict[str, list[tuple[str, str, Doc]]] = {}
        # PIT pages of one scan share (query, sort): evaluate once, page many times.
        self.pit_results: dict[str, Any] = {}
        self.date_fields = set(date_fields)
        self.lock = threading.Lock()

    def is_date(self, field: str) -> bool:
        return field in self.date_fields

    def resolve(self, expr: str) -> tuple[list[str], str | None]:
        """Index names for a comma-separated expression; returns (names, missing)."""
        names: list[str] = []
        for part in expr.split(","):
            part = part.strip()
            if not part or part == "_all":
                names.extend(self.indices)
                continue
            if "*" in part or "?" in part:
                names.extend(n for n in self.indices if fnmatch.fnmatchcase(n, part))
            elif part in self.indices:
                names.append(part)
            else:
                return [], part
        return sorted(set(names)), None

    def docs(self, names: list[str]) -> list[tuple[str, str, Doc]]:
        return [(name, doc_id, src) for name in names for doc_id, src in self.indices[name]]


class _Query:
    """Query DSL evaluation over one document."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    def matches(self, query: dict[str, Any] | None, src: Doc) -> bool:
        if not query:
            return True
        (kind, spec), = query.items()
        if kind == "match_all":
            return True
        if kind == "match_none":
            return False
        if kind == "bool":
            return self._bool(spec, src)
        if kind == "term":
            (field, value), = spec.items()
            if isinstance(value, dict):
                value = value["value"]
            return any(v == value for v in _values(src, field))
        if kind == "terms":
            fields = {k: v for k, v in spec.items() if k != "boost"}
            (field, wanted), = fields.items()
            return any(v in wanted for v in _values(src, field))
        if kind == "exists":
            return bool(_values(src, spec["field"]))
        if kind == "range":
            (field, bounds), = spec.items()
            return any(self._in_range(field, v, bounds) for v in _values(src, field))
        if kind == "match":
            (field, value), = spec.items()
            operator = "or"
            if isinstance(value, dict):
                operator = value.get("operator", "or").lower()
                value = value["query"]
            words = set(re.findall(r"\w+", str(value).lower()))
            have = set()
            for v in _values(src, field):
                have |= set(re.findall(r"\w+", str(v).lower()))
            return words <= have if operator == "and" else bool(words & have)
        raise ValueError(f"unknown query [{kind}]")

    def _bool(self, spec: dict[str, Any], src: Doc) -> bool:
        def clauses(key: str) -> list[dict[str, Any]]:
            value = spec.get(key, [])
            return value if isinstance(value, list) else [value]

        if not all(self.matches(q, src) for q in clauses("filter") + clauses("must")):
            return False
        if any(self.matches(q, src) for q in clauses("must_not")):
            return False
        should = clauses("should")
        if should:
            default = 0 if (clauses("filter") or clauses("must")) else 1
            needed = int(spec.get("minimum_should_match", default))
            if sum(self.matches(q, src) for q in should) < needed:
                return False
        return True

    def _in_range(self, field: str, value: Any, bounds: dict[str, Any]) -> bool:
        as_date = self.store.is_date(field) or (isinstance(value, str) and _to_millis(value))
        if as_date:
            value = _to_millis(value)
            if value is None:
                return False

        def conv(b: Any) -> Any:
            return _to_millis(b) if as_date else b

        checks = {"gt": lambda b: value > b, "gte": lambda b: value >= b,
                  "lt": lambda b: value < b, "lte": lambda b: value <= b}
        for op, check in checks.items():
            if op in bounds and bounds[op] is not None and not check(conv(bounds[op])):
                return False
        return True


class _Aggs:
    def __init__(self, store: _Store, query: _Query) -> None:
        self.store = store
        self.query = query

    def run(self, aggs: dict[str, Any], docs: list[Doc]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, spec in aggs.items():
            sub = spec.get("aggs") or spec.get("aggregations") or {}
            kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
            kind = kinds[0]
            body = spec[kind]
            if kind == "terms":
                out[name] = self._terms(body, docs, sub)
            elif kind == "date_histogram":
                out[name] = self._histogram(body, docs, sub)
            elif kind == "filter":
                kept = [d for d in docs if self.query.matches(body, d)]
                out[name] = {"doc_count": len(kept), **self.run(sub, kept)}
            elif kind == "value_count":
                out[name] = {"value": sum(len(_values(d, body["field"])) for d in docs)}
            else:
                raise ValueError(f"Unknown aggregation type [{kind}]")
        return out

    def _terms(self, body: dict[str, Any], docs: list[Doc], sub: dict[str, Any]) -> dict[str, Any]:
        groups: dict[Any, list[Doc]] = {}
        for d in docs:
            for v in set(map(_hashable, _values(d, body["field"]))):
                groups.setdefault(v, []).append(d)
        size = int(body.get("size", 10))
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
        shown = ordered[:size]
        other = sum(len(g) for _, g in ordered[size:])
        buckets = [{"key": k, "doc_count": len(g), **self.run(sub, g)} for k, g in shown]
        return {"doc_count_error_upper_bound": 0, "sum_other_doc_count": other,
                "buckets": buckets}

    def _histogram(self, body: dict[str, Any], docs: list[Doc],
                   sub: dict[str, Any]) -> dict[str, Any]:
        interval = _parse_interval(body.get("fixed_interval") or body["interval"])
        groups: dict[int, list[Doc]] = {}
        for d in docs:
            for v in _values(d, body["field"]):
                ms = _to_millis(v)
                if ms is not None:
                    groups.setdefault(ms - ms % interval, []).append(d)
        keys = set(groups)
        min_count = int(body.get("min_doc_count", 0))
        bounds = body.get("extended_bounds")
        if min_count == 0 and (keys or bounds):
            lo = min(keys) if keys else None
            hi = max(keys) if keys else None
            if bounds:
                blo, bhi = _to_millis(bounds.get("min")), _to_millis(bounds.get("max"))
                if blo is not None:
                    blo -= blo % interval
                    lo = blo if lo is None else min(lo, blo)
                if bhi is not None:
                    bhi -= bhi % interval
                    hi = bhi if hi is None else max(hi, bhi)
            if lo is not None and hi is not None:
                keys |= set(range(lo, hi + 1, interval))
        buckets = []
        for k in sorted(keys):
            group = groups.get(k, [])
            if len(group) < min_count:
                continue
            buckets.append({"key_as_string": _iso(k), "key": k, "doc_count": len(group),
                            **self.run(sub, group)})
        return {"buckets": buckets}


def _hashable(v: Any) -> Any:
    return json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v


class FakeElasticsearch:
    """Context manager: ``with FakeElasticsearch() as es: Elasticsearch(es.url)``.

    ``api_key``/``basic_auth`` turn on authentication; ``major`` is the server's major
    version (8 accepts compatible-with=7|8, 9 accepts 8|9). ``fail(status, when=...)`` and
    ``slow(seconds, when=...)`` script faults; ``requests`` records (method, path, body).
    """

    def __init__(self, *, api_key: str | None = None,
                 basic_auth: tuple[str, str] | None = None, major: int = 9,
                 date_fields: Iterable[str] = ("@timestamp", "timestamp")) -> None:
        self.api_key = api_key
        self.basic_auth = basic_auth
        self.major = major
        self.store = _Store(date_fields)
        self.faults: list[Fault] = []
        self.slowness: list[Slowness] = []
        self.requests: list[tuple[str, str, Any]] = []
        self.busy_s = 0.0  # time spent answering (query evaluation, JSON), for benchmarks
        self._stop = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------
    def __enter__(self) -> FakeElasticsearch:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting -------------------------------------------------------
    def fail(self, status: int, *, when: str | None = None, times: int | None = None,
             after: int = 0) -> None:
        """Answer ``status`` (with its real error body) for paths containing ``when``, after
        letting ``after`` of them through."""
        self.faults.append(Fault(status, when, times, after))

    def slow(self, seconds: float, *, when: str | None = None) -> None:
        """Hold answers for ``seconds`` (for paths containing ``when``)."""
        self.slowness.append(Slowness(seconds, when))

    def clear_faults(self) -> None:
        self.faults.clear()
        self.slowness.clear()

    def seed(self, index: str, docs: Iterable[Doc]) -> int:
        """Index documents directly (tests that are not about ``_bulk``)."""
        with self.store.lock:
            rows = self.store.indices.setdefault(index, [])
            n = 0
            for doc in docs:
                rows.append((uuid.uuid4().hex[:20], doc))
                n += 1
        return n

    def searches(self) -> list[dict[str, Any]]:
        """Bodies of the ``_search`` requests received, in order."""
        return [body for _, path, body in self.requests if path.endswith("/_search")]

    # --- request handling (called from handler threads) -------------------
    def wait(self, path: str) -> None:
        for s in self.slowness:
            if s.when is None or s.when in path:
                self._stop.wait(s.seconds)

    def fault_for(self, path: str) -> Fault | None:
        for f in self.faults:
            if f.when is None or f.when in path:
                if f.after > 0:
                    f.after -= 1
                    continue
                if f.times is not None:
                    if f.times <= 0:
                        continue
                    f.times -= 1
                return f
        return None

    def authorized(self, header: str | None) -> bool:
        if self.api_key is None and self.basic_auth is None:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        if self.api_key is not None and scheme == "ApiKey":
            return value == self.api_key
        if self.basic_auth is not None and scheme == "Basic":
            expected = base64.b64encode(":".join(self.basic_auth).encode()).decode()
            return value == expected
        return False

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: bytes) -> tuple[int, Any]:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if method in ("GET", "HEAD") and not parts:
            return 200, self._info()
        if parts and parts[-1] == "_bulk":
            return self._bulk(parts[0] if len(parts) == 2 else None, body)
        payload = json.loads(body) if body.strip() else {}
        self.requests.append((method, path, payload))
        if parts and parts[-1] == "_search":
            return self._search(parts[0] if len(parts) == 2 else None, payload)
        if len(parts) == 2 and parts[1] == "_pit" and method == "POST":
            return self._open_pit(parts[0])
        if parts == ["_pit"] and method == "DELETE":
            pit_id = payload.get("id", "")
            freed = 1 if self.store.pits.pop(pit_id, None) is not None else 0
            for key in [k for k in self.store.pit_results if pit_id in k]:
                del self.store.pit_results[key]
            return 200, {"succeeded": True, "num_freed": freed}
        if len(parts) == 1 and method == "PUT":
            self.store.indices.setdefault(parts[0], [])
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": parts[0]}
        if len(parts) == 2 and parts[1] == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        return 400, {"error": {"root_cause": [], "type": "illegal_argument_exception",
                               "reason": f"no handler for [{method} {path}] in the fake"},
                     "status": 400}

    def _info(self) -> dict[str, Any]:
        number = f"{self.major}.1.0"
        return {"name": "fake-node", "cluster_name": "fake", "cluster_uuid": "fake-cluster",
                "version": {"number": number, "build_flavor": "default",
                            "build_type": "docker", "lucene_version": "10.0.0",
                            "minimum_wire_compatibility_version": f"{self.major - 1}.18.0",
                            "minimum_index_compatibility_version": f"{self.major - 1}.0.0"},
                "tagline": "You Know, for Search"}

    def _bulk(self, default_index: str | None, body: bytes) -> tuple[int, Any]:
        lines = [ln for ln in body.decode().splitlines() if ln.strip()]
        items = []
        errors = False
        i = 0
        with self.store.lock:
            while i < len(lines):
                (action, meta), = json.loads(lines[i]).items()
                i += 1
                index = meta.get("_index", default_index)
                doc_id = str(meta.get("_id") or uuid.uuid4().hex[:20])
                rows = self.store.indices.setdefault(index, [])
                if action == "delete":
                    before = len(rows)
                    rows[:] = [r for r in rows if r[0] != doc_id]
                    status, result = (200, "deleted") if len(rows) < before else (404, "not_found")
                else:
                    src = json.loads(lines[i])
                    i += 1
                    existing = [n for n, r in enumerate(rows) if r[0] == doc_id]
                    if existing and action == "create":
                        errors = True
                        conflict = {"type": "version_conflict_engine_exception",
                                    "reason": f"[{doc_id}]: version conflict, "
                                              "document already exists"}
                        items.append({action: {"_index": index, "_id": doc_id, "status": 409,
                                               "error": conflict}})
                        continue
                    if existing:
                        rows[existing[0]] = (doc_id, src)
                        status, result = 200, "updated"
                    else:
                        rows.append((doc_id, src))
                        status, result = 201, "created"
                items.append({action: {"_index": index, "_id": doc_id, "_version": 1,
                                       "result": result, "status": status,
                                       "_shards": {"total": 1, "successful": 1, "failed": 0},
                                       "_seq_no": 0, "_primary_term": 1}})
        return 200, {"took": 1, "errors": errors, "items": items}

    def _open_pit(self, expr: str) -> tuple[int, Any]:
        with self.store.lock:
            names, missing = self.store.resolve(expr)
            if missing:
                return 404, None
            pit_id = base64.b64encode(uuid.uuid4().bytes).decode()
            self.store.pits[pit_id] = self.store.docs(names)
        return 200, {"id": pit_id, "_shards": {"total": 1, "successful": 1, "skipped": 0,
                                               "failed": 0}}

    def _search(self, expr: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        pit = body.get("pit")
        with self.store.lock:
            if pit:
                if expr:
                    err = {"root_cause": [], "type": "action_request_validation_exception",
                           "reason": "Validation Failed: 1: [indices] cannot be used with "
                                     "point in time;"}
                    return 400, {"error": err, "status": 400}
                docs = self.store.pits.get(pit["id"])
                if docs is None:
                    err = {"root_cause": [], "type": "search_context_missing_exception",
                           "reason": "No search context found"}
                    return 404, {"error": err, "status": 404}
            else:
                names, missing = self.store.resolve(expr or "_all")
                if missing:
                    return 404, missing
                docs = self.store.docs(names)
        query = _Query(self.store)
        sort = self._sort_spec(body.get("sort"))
        cache_key = json.dumps([pit and pit["id"], body.get("query"), sort], sort_keys=True)
        cached = self.store.pit_results.get(cache_key) if pit else None
        if cached is None:
            hits = [(i, d) for i, d in enumerate(docs)
                    if query.matches(body.get("query"), d[2])]
            keyed = [(self._sort_values(sort, pos, d[2]), pos, d) for pos, d in hits]
            if sort:
                keyed.sort(key=lambda k: _sort_key(k[0], sort))
            if pit:
                self.store.pit_results[cache_key] = (hits, keyed)
        else:
            hits, keyed = cached
        if sort:
            after = body.get("search_after")
            if after is not None:
                cut = _sort_key(list(after), sort)
                keyed = [k for k in keyed if _sort_key(k[0], sort) > cut]
        start = int(body.get("from", 0))
        size = int(body.get("size", 10))
        page = keyed[start:start + size]
        includes = body.get("_source", True)
        out_hits = []
        for values, _, (index, doc_id, src) in page:
            hit: dict[str, Any] = {"_index": index, "_id": doc_id,
                                   "_score": None if sort else 1.0}
            if includes is not False:
                hit["_source"] = _filter_source(src, includes)
            if sort:
                hit["sort"] = values
            out_hits.append(hit)
        result: dict[str, Any] = {
            "took": 1, "timed_out": False,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"max_score": None if sort or not out_hits else 1.0, "hits": out_hits},
        }
        track = body.get("track_total_hits", 10_000)
        if track is not False:
            limit = len(hits) if track is True else int(track)
            result["hits"]["total"] = {"value": min(len(hits), limit),
                                       "relation": "eq" if len(hits) <= limit else "gte"}
        if pit:
            result["pit_id"] = pit["id"]
        aggs = body.get("aggs") or body.get("aggregations")
        if aggs:
            result["aggregations"] = _Aggs(self.store, query).run(aggs, [d[2] for _, d in hits])
        return 200, result

    @staticmethod
    def _sort_spec(raw: Any) -> list[tuple[str, str]]:
        if raw is None:
            return []
        out = []
        for item in raw if isinstance(raw, list) else [raw]:
            if isinstance(item, str):
                out.append((item, "asc"))
            else:
                (field, opts), = item.items()
                order = opts if isinstance(opts, str) else opts.get("order", "asc")
                out.append((field, order))
        return out

    def _sort_values(self, sort: list[tuple[str, str]], pos: int, src: Doc) -> list[Any]:
        values: list[Any] = []
        for field, _ in sort:
            if field == "_shard_doc":
                values.append(pos)
                continue
            vals = _values(src, field)
            v = vals[0] if vals else None
            if self.store.is_date(field) or (isinstance(v, str) and _to_millis(v) is not None):
                v = _to_millis(v)
            values.append(v)
        return values


def _sort_key(values: list[Any], sort: list[tuple[str, str]]) -> tuple[Any, ...]:
    key: list[Any] = []
    for v, (_, order) in zip(values, sort, strict=True):
        missing = v is None
        if isinstance(v, int | float) and order == "desc":
            v = -v
        elif isinstance(v, str) and order == "desc":
            v = tuple(-ord(c) for c in v)
        key.append((missing, v if not missing else 0))
    return tuple(key)


def _filter_source(src: Doc, includes: Any) -> Doc:
    if includes is True or includes is None:
        return src
    fields = includes if isinstance(includes, list) else includes.get("includes", [])
    out: Doc = {}
    for field in fields:
        value = _get(src, field)
        if value is None:
            continue
        node = out
        parts = field.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeElasticsearch

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        with self._conns_lock:
            self._conns.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Wake handler threads blocked on keep-alive reads so they close their sockets."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 2
        while self._conns and time.monotonic() < deadline:
            time.sleep(0.01)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout tests) leaves a broken pipe; that is expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _dispatch(self) -> None:
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        fake.wait(url.path)
        compat = _compatible_with(self.headers.get("Accept"), self.headers.get("Content-Type"))
        if compat is not None and compat not in (fake.major, fake.major - 1):
            reason = (f"A compatible version is required on both Content-Type and Accept "
                      f"headers if either one has requested a compatible version and the "
                      f"compatible versions must match. Accept={self.headers.get('Accept')}, "
                      f"Content-Type={self.headers.get('Content-Type')}")
            cause = {"type": "media_type_header_exception",
                     "reason": "Invalid media-type value on headers [Accept, Content-Type]"}
            self._send(400, {"error": {"root_cause": [cause], **cause,
                                       "caused_by": {"type": "status_exception",
                                                     "reason": reason}}, "status": 400}, compat)
            return
        if not fake.authorized(self.headers.get("Authorization")):
            payload, headers = _error_body(401)
            self._send(401, payload, compat, headers)
            return
        fault = fake.fault_for(url.path)
        if fault is not None:
            payload, headers = _error_body(fault.status)
            self._send(fault.status, payload, compat, headers)
            return
        began = time.perf_counter()
        try:
            status, payload = fake.handle(self.command, url.path, parse_qs(url.query), body)
        except (ValueError, KeyError, TypeError) as exc:
            cause = {"type": "parsing_exception", "reason": str(exc)}
            status, payload = 400, {"error": {"root_cause": [cause], **cause}, "status": 400}
        headers = {}
        if status == 404 and not isinstance(payload, dict):
            payload, headers = _error_body(404, payload)
        self._send(status, payload, compat, headers)
        fake.busy_s += time.perf_counter() - began

    def _send(self, status: int, payload: Any, compat: int | None,
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        if compat is not None:
            ctype = f"application/vnd.elasticsearch+json;compatible-with={compat}"
        else:
            ctype = "application/json"
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Elastic-Product", "Elasticsearch")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


def _compatible_with(*headers: str | None) -> int | None:
    for header in headers:
        m = re.search(r"compatible-with=(\d+)", header or "")
        if m:
            return int(m.group(1))
    return None


def iter_ndjson(docs: Iterable[Doc], index: str) -> Iterator[str]:
    """Bulk NDJSON lines for ``docs`` (for tests seeding through ``_bulk``)."""
    for doc in docs:
        yield json.dumps({"index": {"_index": index}})
        yield json.dumps(doc)
