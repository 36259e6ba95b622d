"""The HTTP face of Hotwash (FastAPI, served by uvicorn).

- ``POST /slack/events``: events, slash commands and interactivity, through Bolt
  (signature-checked there: a bad signature or a stale timestamp gets 401);
- ``POST /webhooks/alertmanager`` and ``POST /webhooks/grafana``: Bearer-authenticated;
  the body is persisted verbatim before anything reads it and answered 2xx only once
  stored; unreadable JSON or a wrong shape gets a 4xx with a one-line reason;
- ``GET /healthz`` (the process answers) and ``GET /readyz`` (database reachable, runbook
  index loaded); ``GET /metrics`` (Prometheus, ``bot.metrics``).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from bot import metrics, telemetry
from bot.alerts import PayloadError
from bot.intake import Intake

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger("hotwash.web")

MAX_WEBHOOK_BYTES = 5_000_000
"""Alertmanager caps a notification at a few hundred alerts; anything this big is not one."""

ReadyCheck = Callable[[], str]
"""Returns a short status when ready; raises with the reason when not."""


def webhook_shape_error(kind: str, data: Any) -> str | None:
    """Why ``data`` is not a webhook body of ``kind`` (None when it is)."""
    if not isinstance(data, Mapping):
        return "expected a JSON object"
    if kind == "grafana" and ("ruleName" in data or "evalMatches" in data):
        return None  # legacy Grafana alerting
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return "expected a non-empty 'alerts' list (Alertmanager webhook v4 / Grafana)"
    for index, alert in enumerate(alerts):
        if not isinstance(alert, Mapping) or not isinstance(alert.get("labels", {}), Mapping):
            return f"alerts[{index}] must be an object with a 'labels' object"
    return None


def _reason(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": reason.splitlines()[0][:300]},
                        status_code=status)


def build_web_app(*, services: Services, intake: Intake, bolt_app: App | None,
                  ready_checks: Mapping[str, ReadyCheck] | None = None) -> FastAPI:
    """The ASGI app. ``bolt_app`` None serves webhooks and health only (no Slack creds)."""
    settings = services.settings
    web = FastAPI(title="Hotwash", docs_url=None, redoc_url=None, openapi_url=None)
    checks: dict[str, ReadyCheck] = dict(ready_checks or default_ready_checks(services))

    if bolt_app is not None:
        app = bolt_app

        @web.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            body = await request.body()
            bolt_request = to_bolt_request(request, body)
            # Bolt's dispatch is synchronous: run it off the event loop so twenty
            # concurrent clicks are acked in parallel, not one after another.
            bolt_response = await run_in_threadpool(app.dispatch, bolt_request)
            return to_starlette_response(bolt_response)

    async def webhook(kind: str, request: Request) -> Response:
        token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
        if not token:
            return _reason(503, "webhooks are disabled: set HOTWASH_WEBHOOK_TOKEN")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return _reason(401, "missing or wrong bearer token")
        body = await request.body()
        if len(body) > MAX_WEBHOOK_BYTES:
            return _reason(413, f"body over {MAX_WEBHOOK_BYTES // 1_000_000} MB")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        received_id = await run_in_threadpool(
            lambda: intake.persist(source=kind, body=body, headers=headers))
        log.info("webhook received", extra={"source": kind, "received_id": received_id,
                                            "bytes": len(body)})
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            reason = f"invalid JSON: {getattr(exc, 'msg', exc)}"
            await run_in_threadpool(lambda: intake.store.mark_received(
                received_id=received_id, status="failed", error=reason))
            return _reason(400, reason)
        shape = webhook_shape_error(kind, data)
        if shape is not None:
            await run_in_threadpool(lambda: intake.store.mark_received(
                received_id=received_id, status="failed", error=shape))
            return _reason(422, shape)
        try:
            accepted = await run_in_threadpool(
                lambda: intake.accept(received_id=received_id, body=data))
        except PayloadError as exc:
            return _reason(422, str(exc))
        return JSONResponse(status_code=202, content={
            "ok": True, "received_id": received_id,
            "incidents": [{"id": g.incident.id, "alert": g.alert.name, "new": g.created}
                          for g in accepted.grouped],
            "resolved": [a.name for a in accepted.skipped],
        })

    # One correlation id per webhook request: it follows the alerts into the background
    # triage (Intake submits through telemetry.in_context), and its start is the receipt.
    @web.post("/webhooks/alertmanager")
    async def alertmanager(request: Request) -> Response:
        with telemetry.correlated():
            return await webhook("alertmanager", request)

    @web.post("/webhooks/grafana")
    async def grafana(request: Request) -> Response:
        with telemetry.correlated():
            return await webhook("grafana", request)

    @web.get("/metrics")
    async def metrics_page() -> Response:
        # Off the event loop: a scrape reads pending drafts from the database.
        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @web.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @web.get("/readyz")
    async def readyz() -> Response:
        def run() -> tuple[bool, dict[str, str]]:
            results, ok = {}, True
            for name, check in checks.items():
                try:
                    results[name] = check()
                except Exception as exc:  # readiness reports, it does not raise
                    ok = False
                    results[name] = f"not ready: {str(exc).splitlines()[0][:200]}"
            return ok, results

        ok, results = await run_in_threadpool(run)
        return JSONResponse({"ready": ok, "checks": results}, status_code=200 if ok else 503)

    return web


def default_ready_checks(services: Services) -> dict[str, ReadyCheck]:
    """Database reachable; runbook index loaded."""

    def database() -> str:
        with services.store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return "ok"

    def runbooks() -> str:
        index = services.runbooks
        size = getattr(index, "size", None)
        count = size() if callable(size) else None
        return "loaded" if count is None else f"loaded ({count} chunks)"

    return {"database": database, "runbooks": runbooks}
