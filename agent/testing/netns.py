"""Move the current process into a private network namespace, for tests.

Real mDNS tests multicast; they must never do so on the machine's real network. The test
harness calls `enter_private_netns()` once, while the process is still single-threaded (pytest's
`pytest_configure`). Every thread and subprocess started afterwards — zeroconf's threads,
trio's worker threads, a headless Kodi, lircd — inherits the namespace, so none of them can
see or reach the real interfaces.

Inside, the namespace gets what the real-component recipes need: loopback up with multicast
and a multicast route (python-zeroconf on 127.0.0.1), plus a veth pair with both ends inside
and link-local addresses (Kodi starts its web server only when a non-loopback link is up;
avahi ignores loopback).

As root this is `unshare(CLONE_NEWNET)`. Without root it is `CLONE_NEWUSER | CLONE_NEWNET`
with our uid/gid mapped to 0 inside, which works wherever unprivileged user namespaces are
enabled; the process then looks like root to itself (and to its children).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: From <sched.h>; Python 3.11 has no os.unshare.
CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000

#: Set to "off" to run without a private namespace; tests that need one then skip.
OPT_OUT_ENV = "BUTTONS_TEST_NETNS"
#: Set by `enter_private_netns` to the namespace it created ("net:[inode]"), so children and
#: tests can check that they still run inside it.
ACTIVE_ENV = "BUTTONS_TEST_NETNS_ACTIVE"

VETH_NAMES = ("btveth0", "btveth1")
VETH_ADDRESSES = ("169.254.77.1", "169.254.77.2")
VETH_PREFIX_LENGTH = 16

# thread-self: namespaces belong to threads, and /proc/self would show the main thread.
_NET_NS_LINK = Path("/proc/thread-self/ns/net")


class NetnsError(RuntimeError):
    """The private network namespace could not be set up; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class PrivateNetns:
    """What `enter_private_netns` built."""

    #: "net:[inode]" of the new namespace, as readlink(/proc/self/ns/net) shows it.
    namespace: str
    #: "net:[inode]" of the namespace we left (the machine's real network).
    original_namespace: str
    #: True when a user namespace was needed because we are not root.
    user_namespace: bool
    #: True when the parent process had already set it up and we simply run inside it.
    inherited: bool = False

    def describe(self) -> str:
        kind = "user+network namespace" if self.user_namespace else "network namespace"
        origin = (
            "inherited from the parent process"
            if self.inherited
            else f"not the real network {self.original_namespace}"
        )
        links = ", ".join(
            f"{name} {address}/{VETH_PREFIX_LENGTH}"
            for name, address in zip(VETH_NAMES, VETH_ADDRESSES, strict=True)
        )
        return (
            f"tests run in a private {kind} {self.namespace} ({origin}): "
            f"lo 127.0.0.1 with multicast, {links}"
        )


def current_namespace() -> str:
    """The network namespace of the calling thread, e.g. "net:[4026532174]"."""
    return os.readlink(_NET_NS_LINK)


def isolation_active() -> bool:
    """True when this process runs inside the namespace `enter_private_netns` created.

    Works in subprocesses too: the namespace id travels in the environment.
    """
    expected = os.environ.get(ACTIVE_ENV)
    return expected is not None and expected == current_namespace()


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_ENV, "").strip().lower() == "off"


def enter_private_netns() -> PrivateNetns:
    """Unshare the network namespace and configure lo and a veth pair inside it.

    Must be called while the process has a single thread: namespaces belong to threads, and
    threads that already exist would stay on the real network. Raises NetnsError.
    """
    if current_namespace() == os.environ.get(ACTIVE_ENV):
        # A child of an isolated process (e.g. pytest run by a test): already inside.
        inside = current_namespace()
        return PrivateNetns(inside, inside, user_namespace=os.geteuid() != 0, inherited=True)
    _require_single_thread()
    ip = shutil.which("ip")
    if ip is None:
        raise NetnsError("the 'ip' command is missing; install the Debian package iproute2")
    original = current_namespace()
    user_namespace = os.geteuid() != 0
    if user_namespace:
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)
        _map_to_root(uid, gid)
    else:
        _unshare(CLONE_NEWNET)
    namespace = current_namespace()
    if namespace == original:
        raise NetnsError("unshare() returned success but the network namespace did not change")
    _configure_links(ip)
    os.environ[ACTIVE_ENV] = namespace
    return PrivateNetns(namespace, original, user_namespace)


def _require_single_thread() -> None:
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        raise NetnsError(
            f"the process already has {len(threads)} threads; a network namespace must be "
            "entered before any thread starts, or those threads stay on the real network"
        )


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(ctypes.c_int(flags)) == 0:
        return
    err = ctypes.get_errno()
    hint = {
        errno.EPERM: "not permitted: run the tests as root, or enable unprivileged user "
        "namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces>0); "
        "inside a container it needs CAP_SYS_ADMIN",
        errno.EINVAL: "the kernel refused the flags (multi-threaded process, or namespaces "
        "not compiled in)",
        errno.ENOSPC: "the user namespace limit is reached (user.max_user_namespaces)",
    }.get(err, "")
    raise NetnsError(f"unshare({flags:#x}) failed: {os.strerror(err)}. {hint}".rstrip(". "))


def _map_to_root(uid: int, gid: int) -> None:
    # Order matters: setgroups must be denied before an unprivileged process may map its gid.
    for name, content in (
        ("uid_map", f"0 {uid} 1\n"),
        ("setgroups", "deny\n"),
        ("gid_map", f"0 {gid} 1\n"),
    ):
        try:
            Path("/proc/self", name).write_text(content)
        except OSError as exc:
            raise NetnsError(
                f"could not write /proc/self/{name} in the new user ns: {exc}"
            ) from exc


def _configure_links(ip: str) -> None:
    first, second = VETH_NAMES
    commands = [
        ["link", "set", "lo", "up"],
        ["link", "set", "lo", "multicast", "on"],
        ["route", "add", "224.0.0.0/4", "dev", "lo"],
        ["link", "add", first, "type", "veth", "peer", "name", second],
    ]
    for name, address in zip(VETH_NAMES, VETH_ADDRESSES, strict=True):
        commands.append(["addr", "add", f"{address}/{VETH_PREFIX_LENGTH}", "dev", name])
        commands.append(["link", "set", name, "up"])
    for command in commands:
        done = subprocess.run([ip, *command], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NetnsError(
                f"'ip {' '.join(command)}' failed in the private namespace "
                f"(exit {done.returncode}): {done.stderr.strip()}"
            )
