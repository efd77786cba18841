"""The router backend: buttons go where the table says, state comes from one backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from agent.backends.base import Backend, ButtonNotSupported
from agent.backends.keymap import KeyMapError
from agent.backends.lirc import LircBackend, LircConfig
from agent.backends.router import Route, RouterBackend, RouterConfig, RouterConfigError
from agent.backends.virtual import VirtualTV
from agent.testing.lircd import TEST_REMOTE, open_test_lircd

TV_BUTTONS = ["power", "volume_up", "volume_down", "mute"]


class LimitedTV(VirtualTV):
    """A virtual device that only has some buttons (like an IR remote)."""

    def __init__(self, buttons: list[str]) -> None:
        super().__init__()
        self._only = frozenset(buttons)

    def buttons(self) -> frozenset[str]:
        return self._only


def make_router(**config: object) -> tuple[RouterBackend, LimitedTV, VirtualTV]:
    ir, media = LimitedTV([*TV_BUTTONS, "red"]), VirtualTV()
    router = RouterBackend(
        {"kodi": media, "ir": ir},
        RouterConfig(routes=[Route("ir", TV_BUTTONS)], **config),  # type: ignore[arg-type]
    )
    return router, ir, media


async def test_buttons_go_where_the_routes_say() -> None:
    router, ir, media = make_router()
    assert isinstance(router, Backend)
    for button in ["power", "volume_up", "up", "select", "red"]:
        await router.press(button)
    assert ir.history == ["power", "volume_up"]
    # `red` has no route: the default (first) backend has it, so it wins over `ir`.
    assert media.history == ["up", "select", "red"]


async def test_unrouted_button_falls_back_to_any_backend_that_has_it() -> None:
    ir = LimitedTV(["power", "red"])
    media = LimitedTV(["up"])
    router = RouterBackend({"kodi": media, "ir": ir}, RouterConfig())
    await router.press("red")
    assert ir.history == ["red"]
    assert router.buttons() == {"power", "red", "up"}


async def test_explicit_route_is_authoritative() -> None:
    ir = LimitedTV(["mute"])
    router = RouterBackend(
        {"kodi": VirtualTV(), "ir": ir}, RouterConfig(routes=[Route("ir", ["power"])])
    )
    assert "power" not in router.buttons()
    with pytest.raises(ButtonNotSupported, match="routed to virtual"):
        await router.press("power")


async def test_hold_text_and_state_follow_the_configuration() -> None:
    router, ir, media = make_router(state_from="ir", text_to="kodi")
    with trio.fail_after(5):
        async with router.hold("volume_up"):
            pass
    assert ir.history == ["volume_up"]
    await router.send_text("star wars")
    assert media.texts == ["star wars"]
    ir.set_reachable(False, "IR blaster unplugged")
    assert router.state().status_message == "IR blaster unplugged"
    changes = router.state_changes()
    with trio.fail_after(5):
        first = await anext(changes)
    assert not first.available


async def test_run_starts_every_child() -> None:
    started: list[str] = []

    class Recording(VirtualTV):
        async def run(
            self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
        ) -> None:
            started.append(self.label)
            await super().run(task_status=task_status)

        label = ""

    one, two = Recording(), Recording()
    one.label, two.label = "one", "two"
    router = RouterBackend({"one": one, "two": two}, RouterConfig())
    async with trio.open_nursery() as nursery:
        with trio.fail_after(5):
            await nursery.start(router.run)
        assert started == ["one", "two"]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (RouterConfig(default="tv"), "router.default: no backend named 'tv' (known: ir, kodi)"),
        (RouterConfig(state_from="x"), "router.state_from"),
        (RouterConfig(routes=[Route("kodi", ["up"]), Route("ir", ["up"])]), "already routed"),
    ],
)
def test_bad_tables_are_clear_errors(config: RouterConfig, message: str) -> None:
    with pytest.raises(RouterConfigError, match=re.escape(message)):
        RouterBackend({"kodi": VirtualTV(), "ir": VirtualTV()}, config)


def test_unknown_button_in_a_route_names_it() -> None:
    with pytest.raises(KeyMapError, match=r"router.routes\[0\].buttons: 'volume' .*did you mean"):
        RouterBackend({"ir": VirtualTV()}, RouterConfig(routes=[Route("ir", ["volume"])]))


@pytest.mark.lirc
async def test_power_as_ir_through_real_lircd_rest_to_the_virtual_tv(tmp_path: Path) -> None:
    async with open_test_lircd(tmp_path / "lircd") as lircd:
        lirc = LircBackend(
            LircConfig(address=lircd.address, remote=TEST_REMOTE, buttons=TV_BUTTONS)
        )
        media = VirtualTV()
        router = RouterBackend(
            {"kodi": media, "lirc": lirc}, RouterConfig(routes=[Route("lirc", TV_BUTTONS)])
        )
        async with trio.open_nursery() as nursery:
            with trio.fail_after(10):
                await nursery.start(router.run)
                await router.press("power")
                await router.press("up")
            assert lircd.sent_timings()[:2] == [("pulse", 4500), ("space", 4500)]
            assert media.history == ["up"]
            assert media.state().power  # power went to the TV's IR, not the media centre
            nursery.cancel_scope.cancel()


async def test_notify_goes_to_the_first_child_that_can_show_messages() -> None:
    class Screen(VirtualTV):
        def __init__(self) -> None:
            super().__init__()
            self.shown: list[tuple[str, str]] = []

        async def notify(self, title: str, message: str, *, image: str = "") -> None:
            await trio.lowlevel.checkpoint()
            self.shown.append((title, message + image))

    screen = Screen()
    router = RouterBackend({"ir": VirtualTV(), "kodi": screen}, RouterConfig())
    await router.notify("Pair a remote", "Code 1")
    assert screen.shown == [("Pair a remote", "Code 1")]
    blind = RouterBackend({"ir": VirtualTV()}, RouterConfig())
    with pytest.raises(ButtonNotSupported):
        await blind.notify("Pair a remote", "Code 1")
