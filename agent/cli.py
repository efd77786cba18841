"""Command lines: `buttons-agent` (the TV side) and `buttons` (the phone side)."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from agent import config as config_module
from agent.buttons.codec import describe_state
from agent.config import BackendName

EXIT_USAGE = 2
EXIT_FAILED = 1


# -- buttons-agent ---------------------------------------------------------------------------


def _agent_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buttons-agent", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help=f"TOML file (default {config_module.DEFAULT_CONFIG_PATH})"
    )
    parser.add_argument("--backend", choices=typing.get_args(BackendName))
    parser.add_argument("--name", help="user part of the XEP-0174 name user@host")
    parser.add_argument("--nick", help="friendly name phones show")
    parser.add_argument("--port", type=int, help="link-local XMPP port (0 = any free one)")
    parser.add_argument(
        "--listen", action="append", metavar="ADDRESS", help="bind address (repeatable)"
    )
    parser.add_argument(
        "--mdns-interface",
        action="append",
        metavar="ADDRESS",
        dest="mdns_interfaces",
        help="announce on this interface address only (repeatable)",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--state-dir", help="where the key and the paired devices are kept")
    sub = parser.add_subparsers(dest="command", metavar="{peers,selftest}")
    peers = sub.add_parser("peers", help="list or revoke paired devices").add_subparsers(
        dest="peers_command", required=True
    )
    peers.add_parser("list", help="the paired devices")
    revoke = peers.add_parser("revoke", help="unpair a device (its streams are closed)")
    revoke.add_argument("who", metavar="NAME|FINGERPRINT")
    return parser


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options that are config keys and were given."""
    keys = {field.name for field in dataclasses.fields(config_module.Config)}
    return {key: value for key, value in vars(args).items() if key in keys and value is not None}


def load_agent_config(args: argparse.Namespace) -> config_module.Config:
    path = args.config
    if path is None and config_module.DEFAULT_CONFIG_PATH.exists():
        path = config_module.DEFAULT_CONFIG_PATH
    return config_module.load(path, config_overrides(args))


def agent_main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["selftest"]:
        from agent.selftest.runner import selftest_main

        return selftest_main(arguments[1:])
    args = _agent_parser().parse_args(arguments)
    try:
        config = load_agent_config(args)
    except config_module.ConfigError as exc:
        print(f"buttons-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "peers":
        return _peers(config, args)
    from agent.app import Agent
    from agent.service import serve

    def ready(agent: Agent) -> None:
        print(
            f"buttons-agent: {agent.instance} on port {agent.port} ({agent.backend.name} backend); "
            "Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )

    return serve(config, ready, config_file=args.config)


def _peers(config: config_module.Config, args: argparse.Namespace) -> int:
    from agent.app import PEERS_FILE
    from agent.security.keys import short_fingerprint
    from agent.security.truststore import TrustStore, TrustStoreError

    try:
        store = TrustStore(Path(config.state_dir).expanduser() / PEERS_FILE)
        if args.peers_command == "list":
            if not store.peers:
                print("no paired devices", file=sys.stderr)
            for peer in store.peers:
                print(f"{peer.name}\t{peer.fingerprint}\tpaired {peer.paired_at}")
            return 0
        removed = store.revoke(args.who)
    except (TrustStoreError, OSError) as exc:
        print(f"buttons-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not removed:
        print(f"buttons-agent: no paired device matches {args.who!r}", file=sys.stderr)
        return EXIT_FAILED
    for peer in removed:
        print(f"revoked {peer.name} ({short_fingerprint(peer.fingerprint)})")
    return 0


# -- buttons -----------------------------------------------------------------------------------


def _client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buttons", description="A remote control for buttons-agent TVs."
    )
    parser.add_argument("--to", help="which agent (name@host or nick) when several are found")
    parser.add_argument("--host", help="connect to this address instead of discovering by mDNS")
    parser.add_argument("--port", type=int, default=5298, help="with --host: the agent's port")
    parser.add_argument("--timeout", type=float, default=3.0, help="mDNS browse time in seconds")
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDRESS",
        help="browse on this interface address only (repeatable)",
    )
    parser.add_argument(
        "--home", type=Path, help="this device's key and paired agents (default: user config dir)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pair = sub.add_parser("pair", help="pair with an agent: type the code the TV shows")
    pair.add_argument("--pin", help="the 6-digit code (asked for on stdin if not given)")
    pair.add_argument("--name", help="this device's name on the TV (default user@host)")
    sub.add_parser("discover", help="list the agents on the network").add_argument(
        "--all", action="store_true", help="also list other link-local XMPP peers"
    )
    _account_parser(sub)
    via = argparse.ArgumentParser(add_help=False)
    via.add_argument(
        "--via",
        choices=["auto", "local", "server"],
        default="auto",
        help="link-local stream, signed through the XMPP server, or auto: local when the "
        "agent is found on the network, else the server",
    )
    press = sub.add_parser("press", parents=[via], help="press a button")
    press.add_argument("button")
    hold = sub.add_parser("hold", parents=[via], help="hold a button down")
    hold.add_argument("button")
    hold.add_argument("--for", dest="seconds", type=float, default=1.0, metavar="SECONDS")
    text = sub.add_parser("text", parents=[via], help="type text into the TV")
    text.add_argument("text")
    text.add_argument("--no-submit", action="store_true", help="leave the keyboard open")
    sub.add_parser("list", parents=[via], help="the buttons the agent supports")
    state = sub.add_parser("state", parents=[via], help="what the TV is doing")
    state.add_argument("--follow", action="store_true", help="keep printing changes")
    return parser


def _account_parser(sub: Any) -> None:
    account = sub.add_parser(
        "account", help="this device's XMPP account, to reach the TV through a server"
    ).add_subparsers(dest="account_command", required=True)
    add = account.add_parser("add", help="store the account and link it with nearby agents")
    add.add_argument("jid", help="the account, e.g. anna@example.org")
    add.add_argument("--password-file", type=Path, help="first line is the password (else asked)")
    add.add_argument("--server", dest="server_host", default="", help="server host override")
    add.add_argument("--server-port", type=int, default=5222)
    add.add_argument(
        "--tls",
        choices=["required", "none"],
        default="required",
        help="none: plaintext, only for a server on loopback",
    )
    add.add_argument("--ca-file", default="", help="PEM CA to trust for the server")
    account.add_parser("show", help="the stored account and the linked agents")
    account.add_parser("remove", help="forget the account and its password")


async def _client(args: argparse.Namespace) -> int:
    from agent import client
    from agent.security.phone import load_credentials

    if args.command == "discover":
        agents = await client.find_agents(
            seconds=args.timeout, interfaces=args.interface, include_all=args.all
        )
        if not agents:
            print("no agents found", file=sys.stderr)
            return EXIT_FAILED
        for agent in agents:
            extra = f" ({agent.message})" if agent.message else ""
            print(
                f"{agent.instance}\t{agent.nick}\t{agent.host}:{agent.port}\t{agent.status}{extra}"
            )
        return 0
    credentials = load_credentials(args.home)
    if args.command == "account":
        return await _account(credentials, args)
    via = getattr(args, "via", "local")
    if via != "server":
        try:
            target = await _find_target(args)
        except client.ClientError:
            if via == "local" or not _has_server_route(credentials, args.to):
                raise
            via = "server"
    if via == "server":
        from agent.client_server import connect_via_server, server_route

        async with connect_via_server(credentials, server_route(credentials, args.to)) as remote:
            return await _run_command(remote, args)
    if args.command == "pair":
        return await _pair(target, credentials, args)
    client.check_announced_key(credentials, target)
    async with client.connect(
        target.host, target.port, agent=target.instance or None, credentials=credentials
    ) as remote:
        return await _run_command(remote, args)


async def _find_target(args: argparse.Namespace) -> Any:
    """The agent on the LAN: `--host`, or the one mDNS finds within `--timeout`."""
    from agent import client

    if args.host:
        return client.AgentAddress(args.to or "", args.host, args.port)
    found = await client.find_agents(seconds=args.timeout, interfaces=args.interface)
    return client.choose(found, args.to)


def _has_server_route(credentials: Any, wanted: str | None) -> bool:
    from agent.client import ClientError
    from agent.client_server import server_route

    try:
        server_route(credentials, wanted)
    except ClientError:
        return False
    return True


async def _link_nearby(credentials: Any, target: Any) -> None:
    """Link this device's account with `target` over the LAN (no account: nothing to do)."""
    from agent import client
    from agent.client_server import link_agent
    from agent.security.phone import load_account

    account = load_account(credentials.identity.directory)
    if account is None:
        return
    async with client.connect(
        target.host, target.port, agent=target.instance or None, credentials=credentials
    ) as remote:
        agent_jid = await link_agent(remote, credentials)
    agent = target.instance or target.host
    if agent_jid:
        print(f"linked {account.jid} with {agent}: reachable at {agent_jid}")
    else:
        print(f"linked {account.jid}, but {agent} has no server account")


async def _account(credentials: Any, args: argparse.Namespace) -> int:
    from agent import client
    from agent.security import phone

    home = credentials.identity.directory
    if args.account_command == "show":
        account = phone.load_account(home)
        if account is None:
            print("no account; add one: buttons account add JID", file=sys.stderr)
            return EXIT_FAILED
        server = f"{account.host or 'its domain'}:{account.port} (tls {account.tls})"
        print(f"{account.jid}\tvia {server}")
        for peer in credentials.agents.peers:
            print(f"{peer.name}\t{peer.server_jid or 'not linked'}")
        return 0
    if args.account_command == "remove":
        removed = phone.remove_account(home)
        print("account removed" if removed else "no account stored")
        return 0
    from agent.security.linking import normalized_bare_jid

    try:
        jid = normalized_bare_jid(args.jid)
    except ValueError as exc:
        raise client.ClientError(f"not an account JID: {exc}") from None
    if args.password_file:
        password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
    else:
        import getpass

        password = await trio.to_thread.run_sync(getpass.getpass, f"Password for {jid}: ")
    account = phone.PhoneAccount(jid, args.server_host, args.server_port, args.tls, args.ca_file)
    phone.save_account(home, account, password)
    print(f"account {jid} stored")
    try:
        target = await _find_target(args)
    except client.ClientError as exc:
        print(f"not linked yet ({exc}); run this again near the TV", file=sys.stderr)
        return 0
    await _link_or_explain(credentials, target)
    return 0


async def _link_or_explain(credentials: Any, target: Any) -> None:
    """Linking is a bonus after pairing or adding the account: a failure only says so."""
    from agent import client

    try:
        await _link_nearby(credentials, target)
    except (client.ClientError, client.StreamFailed, client.StanzaErrorReply) as exc:
        print(f"not linked yet ({exc}); run `buttons account add` near the TV", file=sys.stderr)


async def _pair(target: Any, credentials: Any, args: argparse.Namespace) -> int:
    from agent.security.keys import short_fingerprint
    from agent.security.pair_client import pair

    async def ask_pin(seconds: float) -> str:
        if args.pin:
            return str(args.pin)
        prompt = f"Type the code shown on the TV (valid {int(seconds)} s): "
        return await trio.to_thread.run_sync(input, prompt)

    paired = await pair(
        target.host,
        target.port,
        agent=target.instance or None,
        credentials=credentials,
        ask_pin=ask_pin,
        device_name=args.name,
    )
    print(f"paired with {paired.agent} (key {short_fingerprint(paired.fingerprint)})")
    await _link_or_explain(credentials, dataclasses.replace(target, instance=paired.agent))
    return 0


async def _run_command(remote: Any, args: argparse.Namespace) -> int:
    """One command on a ButtonsClient, whichever path it uses (`remote.path`)."""
    from agent.client import Pressed

    started = time.perf_counter()

    def via() -> str:
        return f"via {remote.path} in {(time.perf_counter() - started) * 1000:.1f} ms"

    match args.command:
        case "press":
            seconds = await remote.press(args.button)
            print(f"pressed {args.button} via {remote.path} in {seconds * 1000:.1f} ms")
            print(describe_state(await remote.state()))
        case "hold":
            await remote.hold(args.button, args.seconds)
            print(f"held {args.button} for {args.seconds:g} s via {remote.path}")
        case "text":
            await remote.text(args.text, submit=not args.no_submit)
            print(f"sent {via()}")
        case "list":
            for info in await remote.buttons():
                print(f"{info.name}\t{info.label}")
        case "state" if args.follow:
            async for update in remote.follow():
                if isinstance(update, Pressed):
                    print(f"pressed {update.button} (by {update.source})", flush=True)
                else:
                    print(describe_state(update), flush=True)
        case "state":
            state = await remote.state()
            print(describe_state(state))
            print(via())
    return 0


def client_main(argv: Sequence[str] | None = None) -> int:
    from agent.client import ClientError, StanzaErrorReply, StreamFailed
    from agent.net.mdns import MdnsError
    from agent.security.keys import IdentityError
    from agent.security.pair_client import PairingFailed
    from agent.security.phone import AccountError
    from agent.security.truststore import TrustStoreError

    args = _client_parser().parse_args(argv)
    try:
        return trio.run(_client, args)
    except StanzaErrorReply as exc:
        print(f"buttons: the agent said no: {exc.error}", file=sys.stderr)
    except (
        ClientError,
        StreamFailed,
        MdnsError,
        PairingFailed,
        IdentityError,
        TrustStoreError,
        AccountError,
    ) as exc:
        print(f"buttons: {exc}", file=sys.stderr)
    except EOFError:
        print("buttons: no PIN given", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`buttons list | head`): not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return EXIT_FAILED
