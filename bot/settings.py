"""Hotwash settings: the only module that reads the environment.

Every value comes from a ``HOTWASH_*`` environment variable or a ``.env`` file.
``Settings()`` is built in the composition root (``bot.cli``), never at import
time, and passed down. A bad value stops start-up with one line that names the
variable and what was expected (see :func:`load_settings`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "HOTWASH_"


class SettingsError(Exception):
    """A setting has a bad value; the message is one line naming the variable."""


class Settings(BaseSettings):
    """Effective configuration of one Hotwash process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # --- storage -----------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"),
        description="Directory for the embedded SQLite database and Chroma index.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/hotwash.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    auto_migrate: bool = Field(
        default=True,
        description="Let the embedded SQLite default migrate itself at start. "
        "Never applies to other databases: run `hotwash db upgrade`.",
    )

    # --- Slack -------------------------------------------------------------
    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- bot token.")
    slack_app_token: SecretStr | None = Field(
        default=None, description="xapp- app-level token; enables Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Signing secret for HTTP mode request verification."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL."
    )
    alert_channels: list[str] = Field(
        default_factory=list, description="Channel IDs where alerts and symptoms are posted."
    )
    approvers: list[str] = Field(
        default_factory=list, description="Slack user IDs allowed to approve, edit or reject."
    )
    approver_group: str | None = Field(
        default=None, description="Slack user-group ID whose members may approve."
    )
    webhook_token: SecretStr | None = Field(
        default=None, description="Bearer token required on /webhooks/* endpoints."
    )
    http_host: str = Field(default="127.0.0.1", description="HTTP server bind address.")
    http_port: int = Field(default=3000, ge=1, le=65535, description="HTTP server port.")
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Metrics port in Socket Mode (0 = off)."
    )

    # --- model -------------------------------------------------------------
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint, e.g. http://localhost:8080/v1. "
        "Unset: drafts are written from evidence alone.",
    )
    llm_api_key: SecretStr | None = Field(default=None, description="API key for the endpoint.")
    llm_model: str = Field(default="gpt-4o-mini", description="Primary model name.")
    llm_fallback_base_url: str | None = Field(
        default=None, description="Secondary endpoint (default: the primary's)."
    )
    llm_fallback_model: str | None = Field(default=None, description="Secondary model name.")
    llm_timeout_s: float = Field(default=60.0, gt=0, description="Per-request timeout.")
    llm_max_retries: int = Field(default=2, ge=0, le=10, description="Retries with backoff.")
    llm_max_tokens: int = Field(default=1200, gt=0, description="Completion token cap.")
    llm_temperature: float = Field(default=0.1, ge=0, le=2, description="Sampling temperature.")
    llm_seed: int | None = Field(default=7, description="Sampling seed, recorded on every draft.")
    llm_context_tokens: int = Field(
        default=6000, gt=0, description="Prompt token budget for evidence."
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description='USD per 1M tokens, {"model": [prompt, completion]} as JSON.',
    )
    daily_token_quota: int = Field(
        default=0, ge=0, description="Tokens per channel per day; 0 = unlimited."
    )

    # --- Elasticsearch -----------------------------------------------------
    es_hosts: list[str] = Field(
        default_factory=list, description="Elasticsearch URLs; empty = file log source."
    )
    es_api_key: SecretStr | None = Field(default=None, description="Elasticsearch API key.")
    es_username: str | None = Field(default=None, description="Basic auth user.")
    es_password: SecretStr | None = Field(default=None, description="Basic auth password.")
    es_ca_certs: Path | None = Field(default=None, description="CA bundle for TLS.")
    es_verify_certs: bool = Field(default=True, description="Verify TLS certificates.")
    es_log_index: str = Field(default="logs-*", description="Index pattern for logs.")
    es_trace_index: str = Field(default="traces-*", description="Index pattern for APM spans.")
    es_timeout_s: float = Field(default=10.0, gt=0, description="Request timeout.")
    es_deadline_s: float = Field(
        default=20.0, gt=0,
        description="Time one evidence collect may spend in Elasticsearch in all; past it "
                    "the lines already read are kept and a gap says so.")
    log_window_before_s: int = Field(default=900, ge=0, description="Window before alert start.")
    log_window_after_s: int = Field(default=300, ge=0, description="Window after alert start.")
    log_baseline_s: int = Field(default=3600, ge=0, description="Baseline window length.")
    log_max_lines: int = Field(default=50_000, gt=0, description="Hard cap on lines read.")
    log_files: list[Path] = Field(
        default_factory=lambda: [Path("samples/logs")],
        description="Files or directories for the embedded file log source.",
    )
    redaction_patterns: list[str] = Field(
        default_factory=list, description="Extra regexes to redact, as a JSON list."
    )
    es_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "timestamp": "@timestamp", "message": "message", "level": "log.level",
            "service": "service.name", "namespace": "kubernetes.namespace",
            "pod": "kubernetes.pod.name", "host": "host.name", "trace_id": "trace.id",
            "span_id": "span.id", "error_type": "error.type", "error_message": "error.message",
        },
        description="Log field names (ECS defaults) as JSON; keys you omit keep the default.",
    )
    es_label_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "namespace": "kubernetes.namespace", "pod": "kubernetes.pod.name",
            "service": "service.name", "instance": "host.name", "job": "service.name",
            "container": "kubernetes.container.name",
        },
        description="Alert label -> log field used to filter logs, as JSON.",
    )
    log_max_bytes: int = Field(
        default=20_000_000, gt=0, description="Hard cap on log message bytes kept in memory."
    )
    log_evidence_tokens: int = Field(
        default=2500, gt=0, description="Token budget for condensed log and trace evidence."
    )

    # --- runbooks / Chroma -------------------------------------------------
    runbooks_dir: Path = Field(default=Path("runbooks"), description="Markdown runbooks.")
    chroma_host: str | None = Field(
        default=None, description="Chroma server host; unset = embedded under data_dir."
    )
    chroma_port: int = Field(default=8000, ge=1, le=65535, description="Chroma server port.")
    chroma_collection: str = Field(default="runbooks", description="Chroma collection name.")
    embedding_base_url: str | None = Field(
        default=None, description="OpenAI-compatible embeddings endpoint; unset = local ONNX."
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2", description="Embedding model name for the endpoint."
    )
    runbook_url_base: str | None = Field(
        default=None, description="Prefix for runbook links in Slack (e.g. a git web URL)."
    )

    # --- jobs / operations -------------------------------------------------
    digest_cron: str = Field(
        default="0 * * * *",
        description="Cron for channel digests (UTC); several separated by ';', "
        "e.g. '0 * * * *; 0 9 * * *' for hourly and daily.",
    )
    reindex_cron: str = Field(
        default="*/15 * * * *", description="Cron for the incremental runbook re-index (UTC)."
    )
    retention_cron: str = Field(
        default="17 3 * * *", description="Cron for the retention purge (UTC)."
    )
    retention_days: int = Field(default=30, ge=1, description="Raw evidence retention.")
    incident_window_s: int = Field(
        default=3600, gt=0, description="Repeats of one alert within this window join one incident."
    )
    log_level: str = Field(default="INFO", description="Python log level.")
    log_json: bool = Field(default=True, description="Emit JSON log lines.")
    otlp_endpoint: str | None = Field(default=None, description="OTLP endpoint for tracing.")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        allowed = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        if value.upper() not in allowed:
            raise ValueError(f"one of {', '.join(sorted(allowed))}")
        return value.upper()

    @field_validator("redaction_patterns")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("a SQLAlchemy URL such as sqlite:///data/hotwash.db")
        return value

    @property
    def effective_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hotwash.db'}"

    @property
    def is_embedded_db(self) -> bool:
        """True when the database is the embedded SQLite default."""
        return self.effective_database_url.startswith("sqlite")

    @property
    def chroma_dir(self) -> Path:
        """Where the embedded Chroma index lives."""
        return self.data_dir / "chroma"

    @property
    def model_configured(self) -> bool:
        """True when an OpenAI-compatible endpoint is set."""
        return self.llm_base_url is not None


Mode = Literal["socket", "http"]


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning a validation error into one line naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise SettingsError(
            f"{ENV_PREFIX}{field.upper()}: {first['msg']} (got {first.get('input')!r})"
        ) from None


def masked(settings: Settings) -> dict[str, object]:
    """Effective configuration with every secret masked, for `hotwash config check`."""
    out: dict[str, object] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            out[name] = "**********" if value.get_secret_value() else ""
        elif isinstance(value, Path):
            out[name] = str(value)
        elif isinstance(value, list):
            out[name] = [_mask_url(str(v)) for v in value]
        elif isinstance(value, str):
            out[name] = _mask_url(value)
        else:
            out[name] = value
    out["effective_database_url"] = _mask_url(settings.effective_database_url)
    return out


def _mask_url(url: str) -> str:
    """Hide a password embedded in a URL."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:****@{host}"
    return url
