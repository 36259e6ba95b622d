"""`hotwash serve [--socket|--http]`: run the Slack app, the alert webhooks and health."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import typer

from bot import telemetry
from bot.cli.context import err, out, settings_from

log = logging.getLogger("hotwash.serve")


def serve(
    ctx: typer.Context,
    socket: bool | None = typer.Option(
        None, "--socket/--http",
        help="Socket Mode (needs HOTWASH_SLACK_APP_TOKEN) or HTTP (/slack/events). "
             "Default: Socket Mode when an app token is set."),
    host: str | None = typer.Option(None, help="Bind address (default HOTWASH_HTTP_HOST)."),
    port: int | None = typer.Option(None, help="Port (default HOTWASH_HTTP_PORT)."),
    workers: int = typer.Option(4, min=1, max=32, help="Background triage threads."),
    jobs: bool = typer.Option(
        True, "--jobs/--no-jobs",
        help="Run scheduled jobs (digests, re-index, retention). Safe on every replica: "
             "each slot is claimed in the database and runs once."),
) -> None:
    """Serve Slack (Socket Mode or HTTP), the webhooks and /healthz, /readyz."""
    import uvicorn

    from bot.services import build_services
    from bot.slack.app import build_app, build_room
    from bot.web import build_web_app

    settings = settings_from(ctx)
    telemetry.configure_logging(settings)  # JSON lines with a correlation id, secrets scrubbed
    socket_mode = settings.slack_app_token is not None if socket is None else socket
    if socket_mode and settings.slack_app_token is None:
        err.print("configuration error: --socket needs HOTWASH_SLACK_APP_TOKEN (xapp-...)")
        raise typer.Exit(2)
    if settings.slack_bot_token is None:
        err.print("HOTWASH_SLACK_BOT_TOKEN is not set: serving webhooks and health only, "
                  "drafts are stored but not posted to Slack.")
    if not socket_mode and settings.slack_bot_token is not None \
            and settings.slack_signing_secret is None:
        err.print("configuration error: HTTP mode needs HOTWASH_SLACK_SIGNING_SECRET")
        raise typer.Exit(2)

    services = build_services(settings)
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hotwash-triage")
    room = build_room(services, executor=executor)
    scheduler = None
    if jobs:
        from bot.jobs import run_jobs

        scheduler = run_jobs(services=services,
                             slack=room.poster if settings.slack_bot_token else None)
    bolt_app = None
    handler = None
    if settings.slack_bot_token is not None:
        bolt_app = build_app(room, socket_mode=socket_mode)
    if socket_mode and bolt_app is not None and settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        handler = SocketModeHandler(bolt_app, settings.slack_app_token.get_secret_value(),
                                    web_client=room.client)
        handler.connect()  # type: ignore[no-untyped-call]  # non-blocking: own threads
        out.print("Slack: Socket Mode connected")
    web = build_web_app(services=services, intake=room.intake,
                        bolt_app=None if socket_mode else bolt_app)
    bind_host = host or settings.http_host
    bind_port = port or settings.http_port
    out.print(f"HTTP: http://{bind_host}:{bind_port} "
              f"({'/slack/events, ' if bolt_app and not socket_mode else ''}"
              "/webhooks/alertmanager, /webhooks/grafana, /healthz, /readyz)")
    # Socket Mode has no Slack traffic on the HTTP port, so Prometheus may be pointed at
    # HOTWASH_METRICS_PORT instead; /metrics on the HTTP port answers in both modes.
    metrics_port = settings.metrics_port if socket_mode and settings.metrics_port != bind_port \
        else 0
    try:
        with telemetry.operating(settings, store=services.store, metrics_port=metrics_port,
                                 host=bind_host):
            uvicorn.run(web, host=bind_host, port=bind_port, log_level="warning")
    except telemetry.TelemetryError as exc:
        err.print(f"configuration error: {exc}")
        raise typer.Exit(2) from None
    finally:
        if handler is not None:
            handler.close()  # type: ignore[no-untyped-call]
        if scheduler is not None:
            from bot.jobs import stop_scheduler

            stop_scheduler(scheduler)
        executor.shutdown(wait=True, cancel_futures=False)
        services.close()


def register(app: typer.Typer) -> None:
    """Add `serve` to the root app."""
    app.command("serve")(serve)
