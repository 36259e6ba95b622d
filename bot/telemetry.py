"""Structured logs, a correlation id per alert, and optional OpenTelemetry tracing.

One alert gets one correlation id (:func:`correlated`, opened where the alert arrives); a
context variable carries it through every stage, so every log line written while handling
that alert carries it too. Work handed to a thread pool keeps it when submitted through
:func:`in_context`.

Log lines are JSON (python-json-logger) when ``log_json`` is on. A filter on the handler
scrubs configured secrets (every ``SecretStr`` setting, passwords in URLs, and whatever the
project redactor matches) from messages, extra fields and tracebacks, and replaces extra
fields that would carry raw evidence (``evidence``, ``payload``, ``prompt``...) with
``[omitted]``: log what happened and how much, never the evidence itself.

:func:`stage` times one stage of the road: a Prometheus observation, a debug line and,
when ``otlp_endpoint`` is set, one span under the alert's root span (one trace per alert).
:func:`operating` gathers what a serving process needs (tracing, build info, pending-draft
gauges, the Socket Mode metrics port).
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import IO, Any, ParamSpec, TypeVar

from pydantic import SecretStr
from pythonjsonlogger.json import JsonFormatter

from bot import metrics
from bot.redaction import build_redactor
from bot.settings import Settings

log = logging.getLogger("hotwash.telemetry")

P = ParamSpec("P")
R = TypeVar("R")


class TelemetryError(Exception):
    """Telemetry cannot start as configured; the message names the variable."""


# -- correlation id ----------------------------------------------------------------------

_CORRELATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hotwash_correlation_id", default=None
)
_STARTED: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "hotwash_received_at", default=None
)
_STAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "hotwash_stage", default=None
)


def correlation_id() -> str | None:
    """The correlation id of the alert being handled, if any."""
    return _CORRELATION.get()


def new_correlation_id() -> str:
    """A fresh id: 16 hex characters, short enough to grep for and to show in Slack."""
    return uuid.uuid4().hex[:16]


@contextmanager
def correlated(cid: str | None = None) -> Iterator[str]:
    """Handle one alert under ``cid``.

    Without ``cid`` an id already in effect is kept (so the web handler and the pipeline
    share one) and a new one is made otherwise. The moment the outermost block starts is
    the alert's receipt time, read back by :func:`elapsed`.
    """
    current = _CORRELATION.get()
    value = cid or current or new_correlation_id()
    cid_token = _CORRELATION.set(value)
    start_token = _STARTED.set(time.perf_counter()) if _STARTED.get() is None else None
    with ExitStack() as stack:
        if start_token is not None and _tracer is not None:
            # The alert's root span: every stage span below it shares one trace, also
            # in the worker thread that in_context() hands the work to.
            stack.enter_context(_tracer.start_as_current_span(
                "hotwash.alert", attributes={"hotwash.correlation_id": value}))
        try:
            yield value
        finally:
            if start_token is not None:
                _STARTED.reset(start_token)
            _CORRELATION.reset(cid_token)


def elapsed() -> float:
    """Seconds since the alert in hand was received (0.0 outside :func:`correlated`)."""
    started = _STARTED.get()
    return time.perf_counter() - started if started is not None else 0.0


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` to run in a copy of the current context, for thread pools: the
    correlation id follows the work into the worker thread."""
    ctx = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return run


# -- log filters -------------------------------------------------------------------------

# Extra fields that would carry raw evidence or payloads; their values never reach a log.
RAW_FIELDS = frozenset({
    "evidence", "raw", "body", "payload", "prompt", "messages", "completion", "response",
    "log_lines", "lines", "hits", "markdown", "text",
})
OMITTED = "[omitted]"
MASK = "[secret]"
_URL_PASSWORD = re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]+:)[^@\s]+@")
# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "correlation_id", "stage", "trace_id", "span_id", "taskName",
}

Redact = Callable[[str], tuple[str, int]]


class ContextFilter(logging.Filter):
    """Stamps every record with the correlation id, the current stage and, when tracing
    is on, the trace and span ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = _CORRELATION.get()
        record.stage = _STAGE.get()
        if _tracer is not None:
            span_ctx = _current_span_context()
            if span_ctx is not None:
                record.trace_id, record.span_id = span_ctx
        return True


class SecretFilter(logging.Filter):
    """Scrubs secrets from the message, extra fields and tracebacks of every record."""

    def __init__(self, *, secrets: Iterable[str] = (), redact: Redact | None = None) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self._redact = redact

    def scrub(self, text: str) -> str:
        """``text`` with every known secret masked."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _URL_PASSWORD.sub(r"\g<pre>****@", text)
        if self._redact is not None:
            text, _ = self._redact(text)
        return text

    def _value(self, key: str, value: Any) -> Any:
        if key in RAW_FIELDS:
            return OMITTED
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, SecretStr):
            return MASK
        if isinstance(value, Mapping):
            return {str(k): self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._value("", v) for v in value]
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, Mapping):
            record.msg = self._value("", record.msg)
        else:
            try:
                message = record.getMessage()
            except Exception:  # a bad format string must not lose the line
                message = f"{record.msg!r} {record.args!r}"
            record.msg, record.args = self.scrub(message), None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, self._value(key, value))
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value in ``settings`` (``SecretStr`` fields and URL passwords)."""
    found: list[str] = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
    for url in (settings.database_url, settings.llm_base_url, settings.llm_fallback_base_url,
                settings.embedding_base_url, *settings.es_hosts):
        if url and (match := re.search(r"://[^:/@\s]+:([^@\s]+)@", url)):
            found.append(match.group(1))
    return found


def _project_redactor(settings: Settings) -> Redact:
    """The project's one redactor (bot.redaction) with the configured extra patterns."""
    redact: Redact = build_redactor(settings).redact
    return redact


# -- logging setup -----------------------------------------------------------------------

_HANDLER_NAME = "hotwash"
NOISY_LOGGERS = ("httpx", "httpcore", "elastic_transport", "urllib3", "openai._base_client",
                 "slack_sdk.web.base_client", "chromadb")


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, correlation id, extras."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s %(correlation_id)s",
        rename_fields={"levelname": "level", "name": "logger"},
        static_fields={"service": "hotwash"},
        timestamp="time",
    )


def configure_logging(settings: Settings, *, stream: IO[str] | None = None,
                      redact: Redact | None = None) -> logging.Handler:
    """Install Hotwash's one log handler on the root logger (idempotent) and return it.

    ``redact`` defaults to the project redactor; configured secrets are always masked.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretFilter(
        secrets=settings_secrets(settings),
        redact=redact if redact is not None else _project_redactor(settings),
    ))
    if settings.log_json:
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
        ))
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # One INFO line per HTTP request from the clients would drown Hotwash's own lines;
    # they come back with HOTWASH_LOG_LEVEL=DEBUG.
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(
            logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
    return handler


def log_model_call(*, model: str, model_version: str | None, prompt_hash: str | None,
                   prompt_template: str | None = None, prompt_tokens: int = 0,
                   completion_tokens: int = 0, latency_ms: float = 0.0,
                   error: str | None = None) -> None:
    """The one log line every model call writes: which model and version, which prompt
    (template and sha256, never the text), usage and outcome."""
    fields = {
        "model": model,
        "model_version": model_version or model,
        "prompt_template": prompt_template,
        "prompt_hash": prompt_hash,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "latency_ms": round(latency_ms, 1),
        "outcome": "error" if error else "ok",
        "error": error,
    }
    logging.getLogger("hotwash.model").log(
        logging.WARNING if error else logging.INFO, "model call", extra=fields
    )


# -- stages and tracing ------------------------------------------------------------------

_tracer: Any = None
_provider: Any = None


class StageTimer:
    """Handle on a running stage: mark it failed without raising, read its duration."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed = False
        self.seconds = 0.0
        self.span: Any = None

    def fail(self, reason: str | None = None) -> None:
        """The stage degraded (the road goes on): counted as a stage error."""
        self.failed = True
        if self.span is not None and reason:
            self.span.set_attribute("hotwash.failure", reason)


@contextmanager
def stage(name: metrics.Stage, **attrs: str | int | float | bool) -> Iterator[StageTimer]:
    """Time one stage: ``hotwash_stage_seconds``, a debug log line and (with tracing)
    one span carrying the correlation id. An exception marks the stage failed and
    propagates."""
    timer = StageTimer(name)
    token = _STAGE.set(name)
    span_cm = None
    if _tracer is not None:
        span_cm = _tracer.start_as_current_span(f"hotwash.{name}")
        timer.span = span_cm.__enter__()
        timer.span.set_attribute("hotwash.stage", name)
        if cid := _CORRELATION.get():
            timer.span.set_attribute("hotwash.correlation_id", cid)
        for key, value in attrs.items():
            timer.span.set_attribute(f"hotwash.{key}", value)
    start = time.perf_counter()
    exc_info: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield timer
    except BaseException as exc:
        timer.failed = True
        exc_info = (type(exc), exc, exc.__traceback__)
        raise
    finally:
        timer.seconds = time.perf_counter() - start
        metrics.record_stage(stage=name, seconds=timer.seconds, ok=not timer.failed)
        if span_cm is not None:
            if timer.failed:
                _mark_span_failed(timer.span, exc_info[1])
            span_cm.__exit__(*exc_info)
        _STAGE.reset(token)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("stage done", extra={"duration_ms": round(timer.seconds * 1000, 2),
                                           "failed": timer.failed, "stage_name": name})


def _mark_span_failed(span: Any, exc: BaseException | None) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, type(exc).__name__ if exc else "degraded"))


def _current_span_context() -> tuple[str, str] | None:
    from opentelemetry import trace

    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"


def configure_tracing(settings: Settings, *, exporter: Any = None) -> bool:
    """Send one span per stage to ``otlp_endpoint`` (gRPC OTLP); returns True when on.

    ``exporter`` replaces the OTLP exporter (tests pass an in-memory one). Needs the
    ``otel`` extra: ``pip install 'hotwash[otel]'``.
    """
    global _tracer, _provider
    shutdown_tracing()
    if not settings.otlp_endpoint and exporter is None:
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        raise TelemetryError(
            "HOTWASH_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'hotwash[otel]'"
        ) from None
    provider = TracerProvider(resource=Resource.create({"service.name": "hotwash"}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise TelemetryError(
                "HOTWASH_OTLP_ENDPOINT is set but the OTLP exporter is not installed: "
                "pip install 'hotwash[otel]'"
            ) from None
        endpoint = settings.otlp_endpoint or ""
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=endpoint, insecure=endpoint.startswith("http://")
        )))
    # Our own provider, not the global one: tests and embedders may configure twice.
    _provider = provider
    _tracer = provider.get_tracer("hotwash")
    return True


def shutdown_tracing() -> None:
    """Flush and stop tracing (no-op when it is off)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = None
    _provider = None


# -- a serving process -------------------------------------------------------------------


@contextmanager
def operating(settings: Settings, *, store: Any = None, metrics_port: int = 0,
              host: str = "127.0.0.1") -> Iterator[metrics.MetricsServer | None]:
    """What `hotwash serve` needs to be run by an SRE team, undone on exit: tracing when
    ``otlp_endpoint`` is set, the running version as ``hotwash_build_info``, pending drafts
    read from ``store`` at each scrape, and a standalone metrics port when ``metrics_port``
    is not 0 (Socket Mode). Raises :class:`TelemetryError` for a bad tracing setup."""
    from importlib.metadata import PackageNotFoundError, version

    configure_tracing(settings)
    try:
        metrics.record_build(version=version("hotwash"))
    except PackageNotFoundError:
        metrics.record_build(version="unknown")
    if store is not None:
        metrics.watch_pending_drafts(metrics.pending_from_store(store))
        if settings.daily_token_quota > 0:
            metrics.watch_quota(metrics.quota_from_store(store, limit=settings.daily_token_quota))
    server = None
    if metrics_port:
        try:
            server = metrics.serve_metrics(host=host, port=metrics_port)
        except OSError as exc:
            # Triage matters more than a second metrics port: say so loudly, carry on
            # (/metrics on the HTTP port still answers).
            log.error("metrics port %s:%s unavailable (%s); set HOTWASH_METRICS_PORT",
                      host, metrics_port, exc)
        else:
            log.info("metrics on a standalone port", extra={"port": server.port})
    try:
        yield server
    finally:
        if server is not None:
            server.close()
        metrics.watch_pending_drafts(None)
        metrics.watch_quota(None)
        shutdown_tracing()
