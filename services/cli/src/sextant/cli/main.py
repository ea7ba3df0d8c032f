"""``sextant``: one command, many parts. Each part runs as its own process: ``sextant <part>``."""

from __future__ import annotations

import importlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from sextant.cli.settings import CliSettings

if TYPE_CHECKING:
    from sextant.core.config_plane import ConfigState
    from sextant.core.secrets import SecretBox
    from sextant.schemas.config import ConfigDocument

app = typer.Typer(no_args_is_help=True, help="Sextant: open product telemetry.")
config_app = typer.Typer(no_args_is_help=True, help="The config plane.")
app.add_typer(config_app, name="config")
metrics_app = typer.Typer(no_args_is_help=True, help="Metric definitions' data.")
app.add_typer(metrics_app, name="metrics")
warehouse_app = typer.Typer(no_args_is_help=True, help="The warehouse's backups.")
app.add_typer(warehouse_app, name="warehouse")
persons_app = typer.Typer(no_args_is_help=True, help="Persons in the warehouse.")
app.add_typer(persons_app, name="persons")
secrets_app = typer.Typer(no_args_is_help=True, help="The master key and the secrets it seals.")
app.add_typer(secrets_app, name="secrets")
console = Console(stderr=True)

PARTS = ("collector", "processor", "sink", "gateway", "notifier")


def _run_part(part: str) -> None:
    module = importlib.import_module(f"sextant.{part}.__main__")
    if part == "gateway":
        module.main(_beside_the_gateway())
    else:
        module.main()


def _beside_the_gateway() -> list[Any]:
    """With the embedded warehouse (``chdb://``) one process owns the engine: the gateway's.
    The sink then runs inside it, as a background service; with a server it runs alone."""
    if not CliSettings().clickhouse_url.startswith("chdb:"):
        return []
    service = importlib.import_module("sextant.sink.service")
    retention = importlib.import_module("sextant.sink.retention")
    sink_settings = importlib.import_module("sextant.sink.settings").SinkSettings()
    return [service.SinkService(sink_settings), retention.RetentionService(sink_settings)]


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
    """Create Sextant's Kafka topics that do not exist yet (idempotent); give the existing
    ones more replicas when the cluster has grown (three, two in sync for a write)."""
    from sextant.core.kafka import ensure_topics
    from sextant.core.kafka_cluster import raise_replication

    settings = CliSettings()
    created = ensure_topics(settings, partitions=partitions)
    console.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    raised = raise_replication(settings)
    if raised:
        console.print(f"replicas added to: {', '.join(raised)}")


@app.command()
def migrate() -> None:
    """Apply pending ClickHouse migrations (idempotent)."""
    from sextant.core.migrations import migrate as apply_migrations
    from sextant.core.warehouse import connect

    settings = CliSettings()
    applied = apply_migrations(
        connect(settings.clickhouse_url), cluster=settings.clickhouse_cluster
    )
    console.print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@config_app.command("apply")
def config_apply(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    gateway: Annotated[
        str | None,
        typer.Option(
            help="Apply through this gateway's admin API (e.g. http://127.0.0.1:8081) "
            "instead of writing the config topic directly"
        ),
    ] = None,
    admin_key: Annotated[str | None, typer.Option(help="The admin key, with --gateway")] = None,
) -> None:
    """Validate FILE.yaml and write its documents to the config topic (or via a gateway)."""
    import yaml
    from pydantic import ValidationError
    from rich.markup import escape

    from sextant.core.config_file import (
        describe_validation_error,
        describe_yaml_error,
        documents_from_file,
        load_config_file,
    )
    from sextant.core.config_plane import ConfigPublisher
    from sextant.core.feature_versions import versioned
    from sextant.core.secrets import seal_documents
    from sextant.schemas.config import Feature

    try:
        documents = documents_from_file(load_config_file(file))
    except yaml.YAMLError as error:
        console.print(f"[red]{file}[/red]: {escape(describe_yaml_error(error))}")
        raise typer.Exit(2) from error
    except ValidationError as error:
        detail = escape(describe_validation_error(error))
        console.print(f"[red]{file}: invalid config[/red]\n{detail}")
        raise typer.Exit(2) from error
    if gateway is not None:
        _apply_through_gateway(file, gateway, admin_key)  # the gateway seals the secrets
        return
    settings = CliSettings()
    with _secret_errors(str(file)):
        documents = seal_documents(documents, _box(settings))
    state = _config_state(settings)
    if any(isinstance(d, Feature) for d in documents):
        # Features are versioned against what the topic holds; unchanged ones are left out.
        documents = versioned(state, documents, by="sextant config apply", now=datetime.now(UTC))
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(documents)
    finally:
        publisher.close()
    _audit_direct_writes(
        settings, [(d.config_key(), state.get(d.config_key()), d) for d in documents]
    )
    console.print(f"applied {len(documents)} documents from {file}")


def _audit_direct_writes(
    settings: CliSettings, writes: list[tuple[str, ConfigDocument | None, ConfigDocument | None]]
) -> None:
    """Writes made straight to the config topic are audited as the gateway audits its own."""
    from sextant.core.audit_log import AuditPublisher, config_entries
    from sextant.schemas.audit import Actor

    actor = Actor(kind="system", id="sextant config apply")
    entries = config_entries(writes, actor, socket.gethostname())
    if not entries:
        return
    publisher = AuditPublisher(settings)
    try:
        publisher.publish(entries)
    finally:
        publisher.close()


@contextmanager
def _secret_errors(what: str) -> Iterator[None]:
    """Exit 2 with a clear message when a secret cannot be sealed or opened."""
    from sextant.core.secrets import MissingSecretKey, SecretKeyInvalid, UnreadableSecret

    try:
        yield
    except (MissingSecretKey, SecretKeyInvalid, UnreadableSecret) as error:
        console.print(f"[red]{what}[/red]: {error}")
        raise typer.Exit(2) from error


def _box(settings: CliSettings) -> SecretBox | None:
    from sextant.core.secrets import SecretBox

    with _secret_errors("SEXTANT_SECRET_KEY"):
        return SecretBox.from_setting(settings.secret_key)


def _config_state(settings: CliSettings) -> ConfigState:
    from sextant.cli.bootstrap import ConfigUnreadable, read_config

    try:
        return read_config(settings)
    except ConfigUnreadable as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(1) from error


@config_app.command("export")
def config_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
) -> None:
    """Every config document as YAML: keys as hashes, secrets sealed under the master key."""
    from sextant.core.config_export import dump_export

    settings = CliSettings()
    state = _config_state(settings)
    with _secret_errors("config export"):
        text = dump_export(state.documents(), _box(settings))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.touch(mode=0o600)
        output.write_text(text)
    console.print(f"exported {len(state.documents())} documents")


@config_app.command("restore")
def config_restore(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    force: Annotated[
        bool,
        typer.Option(
            help="Write even when the config topic holds documents (they are replaced "
            "key by key; documents the file lacks stay)"
        ),
    ] = False,
) -> None:
    """Write an export's documents to the config topic of an empty deployment.

    Needs the master key the export's secrets were sealed under (in SEXTANT_SECRET_KEY); run
    `sextant topics` first on a new cluster.
    """
    import yaml
    from pydantic import ValidationError
    from rich.markup import escape

    from sextant.core.config_export import load_export
    from sextant.core.config_file import describe_validation_error, describe_yaml_error
    from sextant.core.config_plane import ConfigPublisher

    settings = CliSettings()
    try:
        with _secret_errors(str(file)):
            documents = load_export(file.read_text(), _box(settings))
    except yaml.YAMLError as error:
        console.print(f"[red]{file}[/red]: {escape(describe_yaml_error(error))}")
        raise typer.Exit(2) from error
    except ValidationError as error:
        detail = escape(describe_validation_error(error))
        console.print(f"[red]{file}: not a config export[/red]\n{detail}")
        raise typer.Exit(2) from error
    existing = _config_state(settings).documents()
    if existing and not force:
        console.print(
            f"[red]the config topic holds {len(existing)} documents[/red]: restore into an "
            "empty deployment, or pass --force"
        )
        raise typer.Exit(1)
    publisher = ConfigPublisher(settings)
    try:
        publisher.put(documents)
    finally:
        publisher.close()
    console.print(f"restored {len(documents)} documents from {file}")


@config_app.command("revoke-demo")
def config_revoke_demo() -> None:
    """Revoke the public demo keys (deploy/config/demo.yaml) wherever they are active."""
    from sextant.cli.bootstrap import revoke_demo_keys

    settings = CliSettings()
    revoked = revoke_demo_keys(settings, _config_state(settings))
    names = ", ".join(k.config_key() for k in revoked)
    console.print(f"demo keys revoked: {names}" if revoked else "no demo key is active")


def _apply_through_gateway(file: Path, gateway: str, admin_key: str | None) -> None:
    """POST the file to the gateway's ``/v1/admin/apply``; its problem detail on failure."""
    import json
    import urllib.error
    import urllib.request

    if not admin_key:
        console.print("[red]--gateway needs --admin-key[/red]")
        raise typer.Exit(2)
    if not gateway.startswith(("http://", "https://")):
        console.print("[red]--gateway must be an http(s) URL[/red]")
        raise typer.Exit(2)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        gateway.rstrip("/") + "/v1/admin/apply",
        data=file.read_bytes(),
        headers={"Content-Type": "application/yaml", "Authorization": f"Bearer {admin_key}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            applied = json.loads(response.read())["applied"]
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        console.print(f"[red]{gateway} refused {file} ({error.code})[/red]: {detail}")
        raise typer.Exit(1) from error
    except (urllib.error.URLError, TimeoutError) as error:
        console.print(f"[red]{gateway} cannot be reached[/red]: {error}")
        raise typer.Exit(1) from error
    console.print(f"applied {applied} documents from {file} through {gateway}")


@warehouse_app.command("backup")
def warehouse_backup(
    name: Annotated[str, typer.Argument(help="The backup's name (letters, digits, _ . -)")],
) -> None:
    """Back up the warehouse's database with ClickHouse's BACKUP (every table, the views, the
    migrations ledger). Embedded engine: into <data path>/backups/NAME (stop the gateway
    first); server: to its disk `backups`."""
    from sextant.core.warehouse import connect
    from sextant.core.warehouse_backup import backup

    settings = CliSettings()
    result = backup(connect(settings.clickhouse_url), name, settings.clickhouse_cluster)
    console.print(f"backup {result.id}: {result.status} ({result.destination})")


@warehouse_app.command("restore")
def warehouse_restore(
    name: Annotated[str, typer.Argument(help="The backup's name")],
    source: Annotated[
        str | None, typer.Option(help="The database in the backup (default: this one's name)")
    ] = None,
    into: Annotated[
        str | None, typer.Option(help="Restore as this database (default: the same name)")
    ] = None,
) -> None:
    """Restore a backup with ClickHouse's RESTORE into an empty warehouse (a table that
    already holds data is refused)."""
    from sextant.core.warehouse import connect
    from sextant.core.warehouse_backup import restore

    settings = CliSettings()
    warehouse = connect(settings.clickhouse_url)
    result = restore(warehouse, name, source, into, settings.clickhouse_cluster)
    console.print(f"restore {result.id}: {result.status} ({result.destination})")


@metrics_app.command("backfill")
def metrics_backfill(
    key: Annotated[str, typer.Argument(help="The metric definition's id")],
    project: Annotated[str, typer.Option("--project", "-p", help="The project's id")],
    since: Annotated[datetime, typer.Option(help="First minute to compute (UTC)")],
    until: Annotated[
        datetime | None,
        typer.Option(help="End (UTC, exclusive); default: the last minute live has closed"),
    ] = None,
) -> None:
    """Compute a metric's history from the events table and send it to metric_points."""
    from sextant.core.warehouse import connect

    backfill = importlib.import_module("sextant.processor.backfill")
    settings = CliSettings()
    try:
        report = backfill.run_backfill_command(
            settings,
            connect(settings.clickhouse_url),
            key,
            project,
            since.replace(tzinfo=UTC) if since.tzinfo is None else since,
            None if until is None else until.replace(tzinfo=until.tzinfo or UTC),
        )
    except LookupError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from error
    console.print(
        f"backfilled {report.windows} windows ({report.points} points, version {report.version})"
    )


@persons_app.command("squash")
def persons_squash() -> None:
    """Write every person override onto the events now, and count the closed live windows
    whose persons changed again by person (what the sink does every
    SEXTANT_SINK_PERSON_SQUASH_INTERVAL_SECONDS), so person-aware queries read one column."""
    from sextant.core.config_plane import ConfigFollower
    from sextant.core.metric_history import PointSender
    from sextant.core.warehouse import connect

    settings = CliSettings()
    if settings.clickhouse_cluster is not None:
        console.print(
            "[red]the squash runs on a single ClickHouse node; on a cluster person-aware "
            "queries apply every override at query time[/red]"
        )
        raise typer.Exit(2)
    corrections = importlib.import_module("sextant.sink.corrections")
    follower = ConfigFollower(settings).start()
    points = PointSender(settings)
    try:
        if not follower.wait_caught_up(settings.config_wait_seconds):
            console.print("[red]the config topic could not be read in time[/red]")
            raise typer.Exit(1)
        result, corrected = corrections.squash_and_correct(
            connect(settings.clickhouse_url), follower.state, points, 0.0
        )
        points.flush()
    finally:
        points.close()
        follower.stop()
    console.print(
        f"squashed {result.overrides} overrides; {result.unstamped_events} events had no person"
        f" yet ({result.seconds:.1f} s); {corrected.windows} live windows counted again by"
        f" person ({corrected.points} points)"
    )


@app.command()
def bootstrap(
    env: Annotated[
        bool,
        typer.Option(
            "--env",
            help="Print a new .env for docker compose (master key, ClickHouse password) and "
            "exit: `sextant bootstrap --env > .env`",
        ),
    ] = False,
    secret_key: Annotated[
        bool, typer.Option("--secret-key", help="Print a new master key and exit")
    ] = False,
) -> None:
    """Create the organisation's admin key on a first start (shown once, stored hashed).

    Does nothing when an admin key of the deployment's own exists. Without
    SEXTANT_SECRET_KEY, also prints a new master key to set.
    """
    from sextant.cli.bootstrap import compose_env, ensure_admin_key
    from sextant.core.secrets import generate_secret_key

    if env:
        typer.echo(compose_env(), nl=False)
        return
    if secret_key:
        typer.echo(generate_secret_key())
        return
    settings = CliSettings()
    box = _box(settings)
    result = ensure_admin_key(settings, _config_state(settings))
    if result.created is None:
        names = ", ".join(k.id for k in result.existing)
        console.print(f"an admin key exists ({names}); none created")
    else:
        console.print(
            f"created the admin key '{result.created.id}'. Its secret follows, shown this "
            "once and stored only as a hash: keep it (a password manager), it opens the "
            "admin API (Authorization: Bearer <key>)."
        )
        typer.echo(f"admin key: {result.secret}")
    if box is None:
        console.print(
            "SEXTANT_SECRET_KEY is not set. A new master key follows, stored nowhere: set "
            "SEXTANT_SECRET_KEY to it for every part (the gateway and `sextant config apply` "
            "seal webhook secrets with it, the notifier opens them) and keep a copy; what it "
            "seals cannot be read without it."
        )
        typer.echo(f"SEXTANT_SECRET_KEY={generate_secret_key()}")


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-seal every stored secret under the newest master key.

    The newest is the first of SEXTANT_SECRET_KEY's comma-separated keys; once this has run,
    the older keys can be dropped.
    """
    from sextant.cli.bootstrap import rotate_secrets

    settings = CliSettings()
    box = _box(settings)
    if box is None:
        console.print("[red]SEXTANT_SECRET_KEY is not set[/red]: set it to 'NEW,OLD' to rotate")
        raise typer.Exit(2)
    result = rotate_secrets(settings, _config_state(settings), box)
    console.print(
        f"re-sealed the secrets of {len(result.resealed)} documents under the newest of "
        f"{box.key_count} keys"
    )
    if result.unreadable:
        console.print(
            "[red]no key opens[/red] "
            + ", ".join(result.unreadable)
            + ": add the key they were sealed under to SEXTANT_SECRET_KEY, or set them anew"
        )
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
