"""Wiring: a runbook index that cannot be built degrades drafts instead of stopping the bot."""

from __future__ import annotations

import socket
from pathlib import Path

from bot.alerts import parse_payload
from bot.pipeline import triage
from bot.services import UnavailableRunbookIndex, build_services
from bot.settings import load_settings


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unbuildable_runbook_index_still_yields_a_stored_draft(tmp_path: Path,
                                                             repo_root: Path) -> None:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "disk-full.md").write_text("# Disk full\n\n## Mitigation\n\n- Free space.\n")
    settings = load_settings(
        data_dir=tmp_path / "data", runbooks_dir=runbooks,
        log_files=[repo_root / "samples/logs"],
        # Nothing listens there: embedding the runbooks fails at start.
        embedding_base_url=f"http://127.0.0.1:{_closed_port()}/v1",
    )
    services = build_services(settings)
    try:
        assert isinstance(services.runbooks, UnavailableRunbookIndex)
        [alert] = parse_payload((repo_root / "samples/alerts/checkout-5xx.json").read_bytes())
        draft = triage(alert=alert, services=services)
        assert draft.id is not None and draft.status == "pending"
        assert "runbook index unavailable" in draft.markdown
        # The logs still made it in.
        assert "HikariPool-1" in draft.markdown
    finally:
        services.close()


def test_closing_the_services_closes_every_adapter_even_after_one_fails(
        tmp_path: Path) -> None:
    # Shutdown releases the log source and model clients as well as the store, and one
    # failing close does not leave the others open.
    from bot.services import Services
    from tests.inmemory import InMemoryLogSource

    class Model:
        name = "m"
        closed = False

        def close(self) -> None:
            self.closed = True
            raise RuntimeError("connection already gone")

    class Store:
        closed = False

        def close(self) -> None:
            self.closed = True

    logs, model, store = InMemoryLogSource(), Model(), Store()
    services = Services(settings=load_settings(data_dir=tmp_path), store=store,  # type: ignore[arg-type]
                        runbooks=UnavailableRunbookIndex(error="x"), logs=logs,
                        models=[model])  # type: ignore[list-item]
    services.close()
    assert logs.closed and model.closed and store.closed
