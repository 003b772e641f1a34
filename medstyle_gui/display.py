"""Whether a window can open here, found out without Qt.

Qt's xcb platform aborts the whole process (SIGABRT) when ``DISPLAY`` names an X server
that is not there, and its Wayland platform fails the same way, so ``medstyle gui``
asks first: it connects to the socket each display variable names and closes it again
(no protocol is spoken; a millisecond where a server listens, at most
``CONNECT_TIMEOUT_S`` for a remote host that does not answer).

X11 (``DISPLAY=[PROTOCOL/][HOST]:N[.S]``): no host or ``unix`` is the local server, at the
abstract socket ``\\0/tmp/.X11-unix/XN`` (Linux) or the file ``/tmp/.X11-unix/XN``; a host
is TCP port 6000 + N there (``localhost:10`` is an SSH-forwarded display). Wayland
(``WAYLAND_DISPLAY``): the socket of that name in ``XDG_RUNTIME_DIR``, or the absolute
path it gives.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Where local X servers listen: socket ``X<N>`` for display ``:N``.
X11_SOCKET_DIR = "/tmp/.X11-unix"
#: X servers listening on TCP use port 6000 + N for display ``:N``.
X11_TCP_PORT = 6000
#: How long to wait for a remote X server to accept (s).
CONNECT_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Display:
    """A display an environment variable names, and whether it answered.

    Attributes:
        variable: "DISPLAY" or "WAYLAND_DISPLAY".
        value: the variable's value.
        platform: the Qt platform that draws on it: "xcb" or "wayland".
        problem: why it cannot be used, in words ("nothing answers at /tmp/.X11-unix/X5");
            None when a server accepted a connection.
    """

    variable: str
    value: str
    platform: str
    problem: str | None

    @property
    def reachable(self) -> bool:
        return self.problem is None


def x11_endpoints(value: str) -> list[tuple[int, object]] | None:
    """``(address family, address)`` pairs to try for ``DISPLAY=value``, in the order Xlib
    and xcb try them; None when ``value`` is not a display name."""
    host, colon, rest = value.rpartition(":")
    number = rest.split(".", 1)[0]
    if not colon or not number.isdigit():
        return None
    protocol, slash, name = host.partition("/")
    if not slash:
        protocol, name = "", host
    name = name.strip("[]")  # an IPv6 address in brackets
    if protocol in ("", "unix", "local") and name in ("", "unix"):
        path = f"{X11_SOCKET_DIR}/X{number}"
        abstract = [(socket.AF_UNIX, "\0" + path)] if sys.platform.startswith("linux") else []
        return [*abstract, (socket.AF_UNIX, path)]
    return [(socket.AF_INET, (name or "localhost", X11_TCP_PORT + int(number)))]


def wayland_socket(value: str, environ: Mapping[str, str]) -> Path | None:
    """The socket ``WAYLAND_DISPLAY=value`` names: an absolute path, or a name in
    ``XDG_RUNTIME_DIR``; None when it is a name and ``XDG_RUNTIME_DIR`` is unset."""
    if os.path.isabs(value):
        return Path(value)
    runtime = environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / value if runtime else None


def _connects(family: int, address: object) -> bool:
    """True when something accepts a connection at ``address`` (closed at once)."""
    try:
        if family == socket.AF_INET:
            host, port = address  # type: ignore[misc]
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
            return True
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(address)
        return True
    except OSError:  # refused, missing, unreachable, unknown host, timed out
        return False


def _shown(family: int, address: object) -> str:
    if family == socket.AF_INET:
        host, port = address  # type: ignore[misc]
        return f"{host} port {port}"
    return str(address).lstrip("\0")


def _x11(value: str) -> Display:
    endpoints = x11_endpoints(value)
    if endpoints is None:
        return Display("DISPLAY", value, "xcb", "not a display name like :0 or HOST:0")
    if any(_connects(*endpoint) for endpoint in endpoints):
        return Display("DISPLAY", value, "xcb", None)
    return Display("DISPLAY", value, "xcb", f"nothing answers at {_shown(*endpoints[-1])}")


def _wayland(value: str, environ: Mapping[str, str]) -> Display:
    path = wayland_socket(value, environ)
    if path is None:
        problem: str | None = "XDG_RUNTIME_DIR is unset"
    else:
        problem = None if _connects(socket.AF_UNIX, str(path)) else f"nothing answers at {path}"
    return Display("WAYLAND_DISPLAY", value, "wayland", problem)


def displays(environ: Mapping[str, str] | None = None) -> list[Display]:
    """The displays ``DISPLAY`` and ``WAYLAND_DISPLAY`` name (unset or empty: none), each
    tried once."""
    env = os.environ if environ is None else environ
    found = []
    if env.get("DISPLAY"):
        found.append(_x11(env["DISPLAY"]))
    if env.get("WAYLAND_DISPLAY"):
        found.append(_wayland(env["WAYLAND_DISPLAY"], env))
    return found


def _chosen_platforms(environ: Mapping[str, str]) -> list[str]:
    """The platforms ``QT_QPA_PLATFORM`` lists (``a;b``, each maybe ``name:options``)."""
    names = environ.get("QT_QPA_PLATFORM", "").split(";")
    return [name.split(":", 1)[0].strip() for name in names if name.strip()]


def _draws_on(platform: str, display: Display) -> bool:
    return platform.startswith(display.platform)  # wayland-egl draws on Wayland too


def window_problem(
    environ: Mapping[str, str] | None = None, found: Sequence[Display] | None = None
) -> str | None:
    """None when Qt can open a window here, else why not, in words (no advice).

    Windows and macOS always can; a Qt platform chosen in ``QT_QPA_PLATFORM`` that needs
    no display server (offscreen, vnc, eglfs, ...) can; else one of the displays set (of
    those the chosen platforms draw on) must answer. ``found``: :func:`displays`, when
    already tried.
    """
    env = os.environ if environ is None else environ
    if sys.platform in ("win32", "darwin"):
        return None
    chosen = _chosen_platforms(env)
    if any(not p.startswith(("xcb", "wayland")) for p in chosen):
        return None  # the user's platform (or fallback) needs no display server
    found = displays(env) if found is None else found
    usable = [d for d in found if not chosen or any(_draws_on(p, d) for p in chosen)]
    if any(d.reachable for d in usable):
        return None
    if usable:
        return "cannot reach " + " nor ".join(
            f"display {d.variable}={d.value} ({d.problem})" for d in usable
        )
    if chosen:
        return f"no display for QT_QPA_PLATFORM={env['QT_QPA_PLATFORM']}"
    return "no display: DISPLAY and WAYLAND_DISPLAY are unset"


def qt_platforms(
    environ: Mapping[str, str] | None = None,
    offscreen: bool = False,
    found: Sequence[Display] | None = None,
) -> str | None:
    """A ``QT_QPA_PLATFORM`` value for when the user set none: the platforms of the
    displays that answered (Wayland first in a Wayland session, xcb first otherwise, as
    Qt orders them), then ``offscreen`` when ``offscreen`` (a screenshot then renders
    whatever Qt meets at start-up). None where Qt's own choice is right: no screenshot
    and every display set answered. ``found``: :func:`displays`, when already tried."""
    env = os.environ if environ is None else environ
    if env.get("QT_QPA_PLATFORM") or sys.platform in ("win32", "darwin"):
        return None  # the user's choice; Windows' and macOS' own platform always opens
    found = displays(env) if found is None else found
    if not offscreen and all(d.reachable for d in found):
        return None
    wayland_first = env.get("XDG_SESSION_TYPE") == "wayland"
    ordered = sorted(found, key=lambda d: (d.platform == "wayland") != wayland_first)
    names = [d.platform for d in ordered if d.reachable] + (["offscreen"] if offscreen else [])
    return ";".join(names) or None
