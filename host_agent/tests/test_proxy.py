"""host_agent.proxy: what the agent reads from and tells the proxy's runtime API.

The real HAProxy answers these commands in tests/packaging/test_proxy_config.py (Debian's
package) and in the container suite; here a stand-in answers in HAProxy's format so the
rollout's order and its refusals can be driven step by step: a slot held before the new
container is discovered, admitted only once up, given back once its container left.
"""

from __future__ import annotations

import pytest

from host_agent.proxy import (
    FORCED_DRAIN,
    FORCED_MAINT,
    NO_ADDRESS,
    ProxyControl,
    ProxyError,
    Slot,
    parse_servers_state,
)

HEADER = (
    "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl "
    "srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n"
)


def line(number: int, address: str, op: int, admin: int, name: str | None = None) -> str:
    rest = "1 1 5 6 3 4 6 0 0 0 web 8000 - 0 0 - - 0"
    return f"3 web {number} {name or f'web{number}'} {address} {op} {admin} {rest}\n"


class StandIn:
    """Slots in HAProxy's terms; `tick()` is the proxy's checks and DNS catching up."""

    def __init__(self, count: int = 3) -> None:
        self.slots = {f"web{n}": {"address": "", "op": 0, "admin": NO_ADDRESS} for n in range(1, count + 1)}
        self.commands: list[str] = []
        self.ready_addresses: set[str] = set()

    def run(self, command: str) -> tuple[int, str]:
        self.commands.append(command)
        if command == "show servers state web":
            body = "".join(
                line(n, s["address"] or "-", s["op"], s["admin"])
                for n, s in enumerate(self.slots.values(), start=1)
            )
            return 0, HEADER + body + "\n"
        words = command.split()
        name, state = words[2].split("/", 1)[1], words[4]
        slot = self.slots.get(name)
        if slot is None:
            return 0, "No such server.\n\n"
        slot["admin"] &= ~(FORCED_MAINT | FORCED_DRAIN)
        slot["admin"] |= {"maint": FORCED_MAINT, "drain": FORCED_DRAIN, "ready": 0}[state]
        if state == "ready" and slot["address"]:
            slot["op"] = 2  # "start OK but check immediately"
        return 0, "\n"

    def discover(self, address: str) -> str:
        """DNS: the first slot without an address gets it (held or not)."""
        name, slot = next((n, s) for n, s in self.slots.items() if not s["address"])
        slot["address"], slot["admin"] = address, slot["admin"] & ~NO_ADDRESS
        if not slot["admin"] & FORCED_MAINT:
            slot["op"] = 2  # what HAProxy before 3.1 does: up at once
        return name

    def forget(self, address: str) -> None:
        for slot in self.slots.values():
            if slot["address"] == address:
                slot.update(address="", op=0)
                slot["admin"] |= NO_ADDRESS


def test_the_servers_state_answer_is_read_slot_by_slot():
    text = HEADER + line(1, "10.89.0.14", 2, 0) + line(2, "-", 0, 32) + line(3, "10.89.0.15", 0, 8) + "\n"
    assert parse_servers_state(text) == [
        Slot("web1", "10.89.0.14", 2, 0),
        Slot("web2", "", 0, 32),
        Slot("web3", "10.89.0.15", 0, 8),
    ]
    assert [s.up for s in parse_servers_state(text)] == [True, False, False]


def test_a_server_outside_the_template_is_left_alone():
    text = HEADER + line(1, "10.0.0.2", 2, 0) + line(2, "10.0.0.9", 2, 0, name="backup_web")
    assert [s.name for s in parse_servers_state(text)] == ["web1"]


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "Unknown command.\n",
        "2\n" + line(1, "-", 0, 32),  # another format version
        HEADER + "3 other 1 web1 - 0 32 1 1\n",  # another backend
        HEADER + "3 web 1 web1 -\n",  # cut short
        HEADER + line(1, "10.0.0.1;rm", 2, 0),
        HEADER + line(1, "-", 0, 32).replace(" 0 32 ", " up 32 "),
    ],
)
def test_an_answer_that_is_not_the_expected_state_is_an_error(answer):
    with pytest.raises(ProxyError):
        parse_servers_state(answer)


def test_a_slot_or_state_outside_the_known_ones_is_refused_before_anything_is_sent():
    proxy = StandIn()
    control = ProxyControl(proxy.run)
    refused = [("web1;shutdown", "maint"), ("other/web1", "ready"), ("web1", "up"), ("web1", "maint\nx")]
    for slot, state in refused:
        with pytest.raises(ProxyError, match="refusing"):
            control.set_state(slot, state)
    assert proxy.commands == []


def test_a_failed_exec_is_an_error():
    control = ProxyControl(lambda command: (126, "bash: executable file not found"))
    with pytest.raises(ProxyError, match="exit 126"):
        control.slots()


def test_a_new_container_discovered_into_a_held_slot_gets_no_request_until_admitted():
    proxy = StandIn()
    proxy.discover("10.0.0.1")
    proxy.slots["web1"]["op"] = 2
    control = ProxyControl(proxy.run)
    held = control.hold_free_slots()
    assert held == ["web2", "web3"]
    name = proxy.discover("10.0.0.2")
    assert name == "web2"
    assert not next(s for s in control.slots() if s.name == "web2").up
    assert control.admit(["10.0.0.2"], timeout=1) == ["web2"]
    assert next(s for s in control.slots() if s.name == "web2").up
    assert control.release([n for n in held if n != "web2"], timeout=1) == []
    assert proxy.slots["web3"]["admin"] == NO_ADDRESS


def test_admitting_waits_for_the_dns_then_gives_up_with_what_it_saw():
    proxy = StandIn()
    ticks = iter(range(100))
    control = ProxyControl(proxy.run, clock=lambda: float(next(ticks)))
    with pytest.raises(ProxyError, match=r"10\.0\.0\.7.*no slot"):
        control.admit(["10.0.0.7"], timeout=3)


def test_a_stopped_container_slot_is_given_back_only_once_its_address_went():
    proxy = StandIn()
    proxy.discover("10.0.0.1")
    control = ProxyControl(proxy.run)
    assert control.stop_sending(["10.0.0.1"], "maint") == ["web1"]
    ticks = iter(range(100))
    waiting = ProxyControl(proxy.run, clock=lambda: float(next(ticks)))
    assert waiting.release(["web1"], timeout=2) == ["web1"]  # still has the address: kept held
    assert proxy.slots["web1"]["admin"] & FORCED_MAINT
    proxy.forget("10.0.0.1")
    assert control.release(["web1"], timeout=1) == []
    assert proxy.slots["web1"]["admin"] == NO_ADDRESS
