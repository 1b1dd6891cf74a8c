"""Flask CLI commands: `db upgrade`, `create-account NAME`, `dev-key`."""

import click
from flask.cli import AppGroup

from api import migrate
from api.models import Account
from api.services import accounts

db_cli = AppGroup("db", help="Database schema commands.")
DEMO_ACCOUNT = "Demo"
DEV_KEY_NAME = "make run"


@db_cli.command("upgrade")
def db_upgrade():
    """Apply pending migrations."""
    applied = migrate.upgrade()
    click.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@click.command("create-account")
@click.argument("name")
def create_account(name):
    """Create an account and print its id and an admin key."""
    account, secret = accounts.create_account(name)
    click.echo(f"account: {account.id}")
    click.echo(f"key: {secret}")


@click.command("dev-key")
def dev_key():
    """Ensure the demo account exists and print a fresh admin key for it (for `make run`).

    The previous `make run` key is revoked, so only one dev key is live at a time.
    """
    account = Account.get_or_none(Account.name == DEMO_ACCOUNT)
    if account is None:
        account, secret = accounts.create_account(DEMO_ACCOUNT, key_name=DEV_KEY_NAME)
    else:
        accounts.revoke_keys_named(account.id, DEV_KEY_NAME)
        _, secret = accounts.create_key(account.id, DEV_KEY_NAME, ["admin"])
    click.echo(f"account: {account.id}")
    click.echo(f"key: {secret}")


def init_app(app) -> None:
    app.cli.add_command(db_cli)
    app.cli.add_command(create_account)
    app.cli.add_command(dev_key)
