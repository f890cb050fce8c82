"""``marginflow keys``: rotate the service's keys, and move encrypted files to the newest.

* ``keys rotate-data --dir D``: a new data key (AES-256) in ``D/secrets/data-keys.json``;
  it encrypts from now on, and every older key stays so that old files stay readable.
* ``keys rotate-signing --dir D``: a new token signing key; it signs from now on, tokens
  signed by the previous keys stay valid until they expire.
* ``keys reencrypt --dir D --db URL``: every encrypted file in the store (uploaded CRIFs,
  refused uploads, exports) still under an older data key is sealed again under the newest,
  after which the older keys can be retired.

A running service reads its keys when it starts: restart it (each replica) after a
rotation, then run ``reencrypt``. Nothing secret is printed, only key ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from marginflow.cli.output import fail, print_json, say, table
from marginflow.core.errors import MarginflowError

keys = typer.Typer(
    help="Rotate the service's data and signing keys; re-encrypt stored files.",
    no_args_is_help=True,
)

DirOpt = Annotated[
    Path,
    typer.Option("--dir", help="the service directory (its secrets/ folder holds the keys)"),
]
DbOpt = Annotated[
    str, typer.Option("--db", help="the store's URL (sqlite:///file.db or postgresql://...)")
]
PrefixOpt = Annotated[str, typer.Option("--db-prefix", help="the store's table prefix")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document")]


def register(app: typer.Typer) -> None:
    app.add_typer(keys, name="keys")


def _secrets_dir(directory: Path) -> Path:
    from marginflow.service.secrets_store import secrets_directory

    folder = secrets_directory(directory)
    if not folder.is_dir():
        fail(f"{folder}: no secrets here (give the service's --dir; it makes them at first run)")
    return folder


@keys.command("rotate-data")
def rotate_data_command(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Add a new data key: new files are encrypted with it, old ones stay readable."""
    from marginflow.service.secrets_store import rotate_data

    _secrets_dir(directory)
    try:
        ring = rotate_data(directory)
    except MarginflowError as exc:
        fail(str(exc))
    kids = [k.kid for k in ring.keys]
    if as_json:
        print_json({"current": ring.current.kid, "keys": kids})
        return
    table("data keys (newest encrypts)", ["kid", "role"], _roles(kids))
    say("restart the service, then run `marginflow keys reencrypt` to move old files")


@keys.command("rotate-signing")
def rotate_signing_command(directory: DirOpt, as_json: JsonOpt = False) -> None:
    """Add a new token signing key: it signs from now on; older tokens verify until they
    expire."""
    from marginflow.service.secrets_store import rotate_signing

    _secrets_dir(directory)
    try:
        ring = rotate_signing(directory)
    except MarginflowError as exc:
        fail(str(exc))
    kids = [k.kid for k in ring.keys]
    current = ring.current.kid
    if as_json:
        print_json({"current": current, "keys": kids})
        return
    rows = [(kid, "signs" if kid == current else "verifies") for kid in kids]
    table("signing keys", ["kid", "role"], rows)
    say("restart the service so that it signs with the new key")


@keys.command("reencrypt")
def reencrypt_command(
    directory: DirOpt,
    db: DbOpt,
    prefix: PrefixOpt = "mf_",
    as_json: JsonOpt = False,
) -> None:
    """Seal every stored file that is under an older data key again under the newest."""
    from marginflow.service.sealed import reencrypt_all
    from marginflow.service.secrets_store import load_or_create
    from marginflow.store import Database

    _secrets_dir(directory)
    try:
        secrets, _ = load_or_create(directory)
        store = Database(db, prefix=prefix)
    except MarginflowError as exc:
        fail(str(exc))
    try:
        done = reencrypt_all(store, secrets.data_keys)
    except MarginflowError as exc:
        fail(str(exc))
    finally:
        store.close()
    if as_json:
        print_json({"blobs": done.blobs, "reencrypted": done.moved, "key": done.key_id})
        return
    say(f"{done.moved} of {done.blobs} stored file(s) re-encrypted under key {done.key_id}")


def _roles(kids: list[str]) -> list[tuple[str, str]]:
    return [(kid, "encrypts" if i == len(kids) - 1 else "decrypts") for i, kid in enumerate(kids)]
