"""``ttu keys``: make and show Ed25519 publisher keys for app packages.

Layer: runtime (CLI). ``new`` writes the private key (PEM, mode 0600, never over an
existing file) and ``<key>.pub`` with the public key as base64 raw bytes, the form
board.toml's ``[packages] trusted_keys`` takes; ``show`` prints the public key and key
id of a private or public key file. Errors are ``PackageError`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("keys", help="publisher keys for signing app packages")
    sub = parser.add_subparsers(dest="keys_command", metavar="COMMAND", required=True)
    p = sub.add_parser("new", help="generate a key pair: KEY (private, 0600) and KEY.pub")
    p.add_argument("key", type=Path, help="private key file to create, e.g. keys/publisher.pem")
    p.set_defaults(handler=_cmd_new)
    p = sub.add_parser("show", help="print the public key and key id of a key file")
    p.add_argument("key", type=Path, help="a private key (PEM) or public key (.pub / PEM) file")
    p.set_defaults(handler=_cmd_show)


def _print_public(text: str, kid: str) -> None:
    print(f"key id:     {kid}")
    print(f"public key: {text}")
    print("board.toml:")
    print("  [packages]")
    print(f'  trusted_keys = ["{text}"]')


def _cmd_new(args: argparse.Namespace) -> int:
    from protocols.packages import BadKey, generate_keypair, key_id, public_key_text
    from runtime.packages.keys import write_private_key

    path: Path = args.key
    pub_path = path.with_name(path.name + ".pub")
    if pub_path.exists():
        raise BadKey(f"{pub_path} exists; refusing to overwrite a key")
    private, public = generate_keypair()
    write_private_key(private, path)
    text = public_key_text(public)
    try:
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text + "\n")
    except OSError as err:
        path.unlink(missing_ok=True)
        raise BadKey(f"cannot create {pub_path}: {err.strerror or err}") from err
    print(f"private key: {path} (mode 0600: keep it secret)")
    print(f"public key:  {pub_path}")
    _print_public(text, key_id(public))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from protocols.packages import BadKey, key_id, public_key_text
    from runtime.packages.keys import load_private_key, load_public_key

    path: Path = args.key
    try:
        head = path.read_bytes()[:64]
    except OSError as err:
        raise BadKey(f"cannot read {path}: {err.strerror or err}") from err
    public = load_private_key(path).public_key() if b"PRIVATE KEY" in head else load_public_key(path)
    _print_public(public_key_text(public), key_id(public))
    return 0


__all__ = ["register"]
