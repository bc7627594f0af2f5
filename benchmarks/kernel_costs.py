"""What the probes add to the kernel's hot paths: ns per syscall (getppid loop) idle and
while containers start, the cost of a context switch (pipe ping-pong), and the time to
compile and attach each probe. On and off rounds alternate, in pairs whose order flips."""

import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from containers import Fleet
from native import Tools
from probes import AgentProbes, EmptySysEnter
from stats import Figure, differences, ratios

State = TypeVar("State")


@dataclass(frozen=True)
class Plan:
    rounds: int
    syscalls: int
    trips: int


QUICK = Plan(rounds=3, syscalls=200_000, trips=10_000)
FULL = Plan(rounds=30, syscalls=1_000_000, trips=50_000)


def rotated(
    rounds: int,
    states: Sequence[State],
    switch: Callable[[State], None],
    sample: Callable[[], float],
) -> dict[State, list[float]]:
    """`rounds` samples in each state; the order within a round rotates (and flips for two
    states), so no state always runs first."""
    samples: dict[State, list[float]] = {state: [] for state in states}
    for index in range(rounds):
        shift = index % len(states)
        for state in [*states[shift:], *states[:shift]]:
            switch(state)
            samples[state].append(sample())
    return samples


def interleaved(
    rounds: int, switch: Callable[[bool], None], sample: Callable[[], float]
) -> tuple[list[float], list[float]]:
    """`rounds` pairs of (on, off) samples, left attached."""
    samples = rotated(rounds, (True, False), switch, sample)
    switch(True)
    return samples[True], samples[False]


class Births:
    """runc run of a /bin/true container, one after the other, until stopped."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.stop = threading.Event()
        self.started = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            container = self.fleet.add(["/bin/true"])
            subprocess.run(self.fleet.run_command(container), capture_output=True, timeout=120)
            self.started += 1

    def __enter__(self) -> "Births":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join()


def syscall_figures(plan: Plan, tools: Tools, probes: AgentProbes, fleet: Fleet) -> list[Figure]:
    wall: dict[str, list[float]] = {"agent": [], "off": [], "floor": []}
    state = {"now": "agent"}
    floor = EmptySysEnter()

    def switch(to: str) -> None:
        state["now"] = to
        probes.attached(to == "agent")
        floor.attached(to == "floor")

    def agent_only(on: bool) -> None:
        state["now"] = "agent" if on else "off"
        probes.attached(on)

    def sample() -> float:
        cpu, wall_ns = tools.ns_per_syscall(plan.syscalls)
        wall[state["now"]].append(wall_ns)
        return cpu

    try:
        idle = rotated(plan.rounds, ("agent", "off", "floor"), switch, sample)
    finally:
        floor.attached(False)
        floor.close()
        probes.attached(True)
    on, off = idle["agent"], idle["off"]
    idle_wall = differences(wall["agent"], wall["off"])
    wall = {"agent": [], "off": []}
    with Births(fleet) as births:
        busy_on, busy_off = interleaved(plan.rounds, agent_only, sample)
    loop = (
        f"C loop of syscall(SYS_getppid), {plan.syscalls:,} calls per round timed by the "
        "thread's CPU clock"
    )
    how = (
        f"{loop}, {plan.rounds} rounds of: the agent's probes (births.c + runqlat.c) "
        "attached, nothing attached, a raw sys_enter program that returns at once attached, "
        "in rotating order; median (min to max) of the per-round difference"
    )
    return [
        Figure("syscall_ns_bare", "syscall cost, no probe", f"{min(off):.0f} ns (best round)", how),
        Figure(
            "syscall_ns_added_idle",
            "ns added per syscall, agent idle",
            differences(on, off).text(1),
            how,
        ),
        Figure(
            "syscall_ns_added_idle_wall",
            "ns added per syscall, agent idle, wall clock",
            idle_wall.text(1),
            how.replace("thread's CPU clock", "wall clock (counts time other work takes)"),
        ),
        Figure(
            "syscall_ns_floor",
            "ns added per syscall, empty raw sys_enter program",
            differences(idle["floor"], off).text(1),
            f"{how}: the least any probe that keeps sys_enter attached costs",
        ),
        Figure(
            "syscall_ns_above_floor",
            "ns the agent adds beyond that floor",
            differences(on, idle["floor"]).text(1),
            f"{how}: agent attached minus the empty program attached",
        ),
        Figure(
            "syscall_ratio_idle",
            "syscall time ratio on/off, agent idle",
            ratios(on, off).text(),
            how,
        ),
        Figure(
            "syscall_ns_added_births",
            "ns added per syscall, containers starting",
            differences(busy_on, busy_off).text(1),
            f"{loop}, agent's probes attached vs detached, {plan.rounds} interleaved pairs; "
            "median (min to max) of the per-pair difference; meanwhile `runc run` of busybox "
            f"/bin/true back to back ({births.started} starts)",
        ),
    ]


def context_switch_figures(plan: Plan, tools: Tools, probes: AgentProbes) -> list[Figure]:
    runqueue = probes.parts[-1]  # runqlat.c alone: births.c's programs stay detached

    def switch(on: bool) -> None:
        runqueue.attach() if on else runqueue.detach()

    probes.attached(False)
    try:
        on, off = interleaved(plan.rounds, switch, lambda: tools.ns_per_round_trip(plan.trips))
    finally:
        probes.attached(True)
    how = (
        f"pipe ping-pong of two processes pinned to CPU 0, CPU time of both per round trip, "
        f"{plan.trips:,} round trips "
        f"(2 switches each) per round, runqlat.c attached vs detached, {plan.rounds} "
        "interleaved pairs"
    )
    return [
        Figure("ctxswitch_ns_bare", "round trip, no probe", f"{min(off):.0f} ns (best round)", how),
        Figure("ctxswitch_ratio", "context-switch time ratio on/off", ratios(on, off).text(), how),
    ]


def load_figures(probes: AgentProbes) -> list[Figure]:
    how = "bpfsupport.load(): BCC compile (clang in-process), load and attach, once, at start"
    return [
        Figure(
            "bpf_load_births_s",
            "births.c compile+attach",
            f"{probes.load_seconds['births.c']:.2f} s",
            how,
        ),
        Figure(
            "bpf_load_runqlat_s",
            "runqlat.c compile+attach",
            f"{probes.load_seconds['runqlat.c']:.2f} s",
            how,
        ),
    ]
