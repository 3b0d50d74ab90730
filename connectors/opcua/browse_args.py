"""The options of ``gateway browse``, apart from the browsing itself: the command line is built
at every start of the gateway, which must not import asyncua for it."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_browse_arguments"]


def add_browse_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``gateway browse``."""
    parser.add_argument("endpoint", help="opc.tcp://host:port[/path]")
    parser.add_argument("--node", default="i=85", help="start node id (default i=85, Objects)")
    parser.add_argument("--depth", type=int, default=10, help="levels below it (default 10)")
    parser.add_argument("--yaml", action="store_true", help="print a device/profile YAML block")
    parser.add_argument("--profile-id", help="id of the profile in the YAML (default: derived)")
    parser.add_argument("--username", help="log in as this user")
    parser.add_argument(
        "--password", help="the user's password (default: environment OPCUA_PASSWORD)"
    )
    parser.add_argument("--policy", choices=("None", "Basic256Sha256"), default="None")
    parser.add_argument("--mode", choices=("Sign", "SignAndEncrypt"), help="with --policy")
    parser.add_argument(
        "--trust-on-first-use",
        action="store_true",
        help="trust (and store) a server certificate never seen before",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("./data"),
        help="where the client certificate and trusted server certificates are (./data)",
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
