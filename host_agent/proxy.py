"""The proxy's runtime API: which web container gets traffic, switched by the agent, at once.

deploy/proxy/haproxy.cfg finds web containers through the engine's DNS and checks their
/healthz/ready. On its own that leaves two gaps during an update, both measured on the
container stack (docs/performance.md, "Nothing stops"): HAProxy (before 3.1's `init-state`)
counts a server it has just discovered as up until its first check fails, so a new release
that is not ready yet got requests for a few seconds; and a drained or restored server
moves only after three checks. So around a rollout the agent holds every free server slot
in maintenance before it starts a new container (the container is discovered into a held
slot and gets nothing), admits the slot once the container's own readiness passed, drains
the old ones (no new request, in-flight ones finish), and gives every slot it held back.

The API listens on the proxy container's own loopback (`stats socket ipv4@127.0.0.1:9999`):
no other container reaches it, and the agent reaches it with `exec` in the proxy container
(bash's /dev/tcp: the official image has no socat). Without it (an older configuration, a
proxy image without bash) the agent falls back to the readiness file alone and waits for
the proxy's checks. Nothing here comes from the data dir: slot names are checked against
the template's and addresses against the engine's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

BACKEND = "web"
API_PORT = 9999
# One command, its answer, then the API closes the connection (non-interactive mode).
API_SCRIPT = f'exec 3<>/dev/tcp/127.0.0.1/{API_PORT} && printf "%s\\n" "$1" >&3 && cat <&3'
SLOT_NAME = re.compile(r"^web[0-9]{1,3}$")
ADDRESS = re.compile(r"^[0-9a-fA-F.:]{2,45}$")
# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced maintenance, forced drain, no address.
FORCED_MAINT = 0x01
FORCED_DRAIN = 0x08
NO_ADDRESS = 0x20
RUNNING = 2  # srv_op_state: up


class ProxyError(Exception):
    pass


@dataclass(frozen=True)
class Slot:
    name: str
    address: str  # "" while no container fills it
    op_state: int
    admin_state: int

    @property
    def up(self) -> bool:
        """Gets new requests: up, not in maintenance nor drained."""
        return self.op_state == RUNNING and not self.admin_state & (FORCED_MAINT | FORCED_DRAIN | NO_ADDRESS)


def parse_servers_state(text: str, backend: str = BACKEND) -> list[Slot]:
    """`show servers state <backend>` (format 1): its slots, or ProxyError."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise ProxyError(f"not a servers-state answer: {' '.join(text.split())[:120]!r}")
    slots = []
    for line in lines[1:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 7 or fields[1] != backend:
            raise ProxyError(f"unexpected servers-state line: {line[:120]!r}")
        name, address = fields[3], fields[4]
        if not SLOT_NAME.match(name):
            continue  # not a server of the template (a fixed server someone added)
        if address in {"-", "0.0.0.0", "::"}:  # noqa: S104 (an unset address, not a bind)
            address = ""
        elif not ADDRESS.match(address):
            raise ProxyError(f"unexpected address for {name}: {address[:60]!r}")
        try:
            op_state, admin_state = int(fields[5]), int(fields[6])
        except ValueError:
            raise ProxyError(f"unexpected state for {name}: {line[:120]!r}") from None
        slots.append(Slot(name, address, op_state, admin_state))
    return slots


class ProxyControl:
    """Commands to the runtime API through `run(command) -> (exit code, answer)`."""

    def __init__(self, run: Callable[[str], tuple[int, str]], clock: Callable[[], float] = time.monotonic):
        self._run = run
        self._clock = clock

    def command(self, command: str) -> str:
        code, answer = self._run(command)
        if code != 0:
            raise ProxyError(f"{command!r}: exit {code}: {' '.join(answer.split())[:200]}")
        return answer

    def slots(self) -> list[Slot]:
        return parse_servers_state(self.command(f"show servers state {BACKEND}"))

    def set_state(self, slot: str, state: str) -> None:
        if not SLOT_NAME.match(slot) or state not in {"ready", "drain", "maint"}:
            raise ProxyError(f"refusing to set {slot!r} to {state!r}")
        answer = self.command(f"set server {BACKEND}/{slot} state {state}").strip()
        if answer:
            # Success is an empty answer; anything else is HAProxy saying why not.
            raise ProxyError(f"set server {BACKEND}/{slot} state {state}: {answer[:200]}")

    def hold_free_slots(self) -> list[str]:
        """Every slot without a container goes into maintenance; their names."""
        held = [s.name for s in self.slots() if not s.address and not s.admin_state & FORCED_MAINT]
        for name in held:
            self.set_state(name, "maint")
        return held

    def slots_of(self, addresses: Iterable[str]) -> list[Slot]:
        wanted = set(addresses)
        return [s for s in self.slots() if s.address and s.address in wanted]

    def wait_for(
        self, addresses: Iterable[str], timeout: float, predicate: Callable[[Slot], bool]
    ) -> list[Slot]:
        """The slots of `addresses` once each satisfies `predicate`; ProxyError after `timeout`."""
        wanted = set(addresses)
        deadline = self._clock() + timeout
        while True:
            found = self.slots_of(wanted)
            if {s.address for s in found} >= wanted and all(predicate(s) for s in found):
                return found
            if self._clock() > deadline:
                seen = ", ".join(f"{s.name}={s.address}" for s in found) or "no slot"
                raise ProxyError(f"the proxy did not get to the expected state for {sorted(wanted)} ({seen})")
            time.sleep(0.2)

    def admit(self, addresses: Iterable[str], timeout: float) -> list[str]:
        """Traffic to the containers at `addresses` once the proxy's own check passed; slot names."""
        wanted = list(addresses)
        slots = self.wait_for(wanted, timeout, lambda s: True)  # discovered by DNS
        for slot in slots:
            if slot.admin_state & (FORCED_MAINT | FORCED_DRAIN):
                self.set_state(slot.name, "ready")
        return [s.name for s in self.wait_for(wanted, timeout, lambda s: s.up)]

    def stop_sending(self, addresses: Iterable[str], state: str = "drain") -> list[str]:
        """No new request to the containers at `addresses` (in-flight ones finish); slot names."""
        slots = self.slots_of(addresses)
        for slot in slots:
            self.set_state(slot.name, state)
        return [s.name for s in slots]

    def release(self, names: Iterable[str], timeout: float) -> list[str]:
        """Held or drained slots back to normal once their container left them (by DNS).

        A slot given back while it still has the address of a stopped container would be
        counted up again for a moment (a connect timeout for the requests sent to it), so
        this waits up to `timeout` for the address to go; the names it could not give back.
        """
        pending = set(names)
        deadline = self._clock() + timeout
        while pending:
            for slot in self.slots():
                if slot.name in pending and not slot.address:
                    if slot.admin_state & (FORCED_MAINT | FORCED_DRAIN):
                        self.set_state(slot.name, "ready")
                    pending.discard(slot.name)
            if not pending or self._clock() > deadline:
                break
            time.sleep(0.2)
        return sorted(pending)

    def release_stale(self) -> list[str]:
        """Slots without a container left held or drained (an agent killed mid-rollout)."""
        stale = [
            s.name for s in self.slots() if not s.address and s.admin_state & (FORCED_MAINT | FORCED_DRAIN)
        ]
        for name in stale:
            self.set_state(name, "ready")
        return stale
