"""``sextant``: one command, many parts. Each part runs as its own process: ``sextant <part>``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from sextant.cli.settings import CliSettings

app = typer.Typer(no_args_is_help=True, help="Sextant: open product telemetry.")
config_app = typer.Typer(no_args_is_help=True, help="The config plane.")
app.add_typer(config_app, name="config")
console = Console(stderr=True)

PARTS = ("collector", "processor", "sink", "gateway", "notifier")


def _run_part(part: str) -> None:
    module = importlib.import_module(f"sextant.{part}.__main__")
    module.main()


def _register_part(part: str) -> None:
    def command() -> None:
        _run_part(part)

    command.__doc__ = f"Run the {part} until interrupted."
    app.command(name=part)(command)


for _part in PARTS:
    _register_part(_part)


@app.command()
def topics(
    partitions: Annotated[
        int | None, typer.Option(help="Partitions for data topics (default per topic)")
    ] = None,
) -> None:
    """Create Sextant's Kafka topics that do not exist yet (idempotent)."""
    from sextant.core.kafka import ensure_topics

    created = ensure_topics(CliSettings(), partitions=partitions)
    console.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")


@app.command()
def migrate() -> None:
    """Apply pending ClickHouse migrations (idempotent)."""
    from sextant.core.migrations import migrate as apply_migrations
    from sextant.core.warehouse import connect

    settings = CliSettings()
    applied = apply_migrations(connect(settings.clickhouse_url))
    console.print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@config_app.command("apply")
def config_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
) -> None:
    """Validate FILE.yaml and write its documents to the config topic."""
    from pydantic import ValidationError

    from sextant.core.config_file import documents_from_file, load_config_file
    from sextant.core.config_plane import ConfigPublisher

    try:
        documents = documents_from_file(load_config_file(file))
    except ValidationError as error:
        console.print(f"[red]{file}: invalid config[/red]\n{error}")
        raise typer.Exit(2) from error
    publisher = ConfigPublisher(CliSettings())
    try:
        publisher.put(documents)
    finally:
        publisher.close()
    console.print(f"applied {len(documents)} documents from {file}")


if __name__ == "__main__":
    app()
