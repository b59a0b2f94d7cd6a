"""The supervisor over dummy children: slots, restarts, heartbeats, shutdown order, orphans.

The supervisor runs in the main thread of its own process (it installs signal
handlers) through ``tests.support.supervised``; the children only record what
happens to them, so no router, worker, Redis or network takes part.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.support.processes import REPO, timeout, wait_for


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    events_path: Path
    log_path: Path
    socket_path: Path
    workers: int
    temp_dir: Path  # its TMPDIR, where the private IPC directory is made

    def ipc_dirs(self) -> list[Path]:
        """The IPC directories named with this supervisor's pid."""
        return sorted(self.temp_dir.glob(f"notify-push-gateway-{self.process.pid}-*"))

    @property
    def names(self) -> list[str]:
        return ["router", *(f"worker-{i}" for i in range(1, self.workers + 1))]

    def lines(self) -> list[str]:
        """The complete lines the children recorded, in order."""
        if not self.events_path.exists():
            return []
        # The last piece is "" or a line still being written: leave it for the next poll.
        return self.events_path.read_text().split("\n")[:-1]

    def events(self) -> list[tuple[str, str, int]]:
        """``(event, child name, pid)`` in the order the children recorded them."""
        return [(event, name, int(pid)) for event, name, pid, *_ in map(str.split, self.lines())]

    def pids(self, name: str) -> list[int]:
        """Every pid that started in ``name``'s slot, oldest first."""
        return [pid for event, child, pid in self.events() if event == "start" and child == name]

    def running(self) -> dict[str, int]:
        """Child name -> pid of its latest start, once every slot has started."""
        wait_for(lambda: all(self.pids(name) for name in self.names), 10, "every slot to start")
        return {name: self.pids(name)[-1] for name in self.names}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_exit(self) -> int:
        status = self.process.wait(timeout(20))
        assert "Traceback" not in self.log(), self.log()
        return status


class StartSupervised(Protocol):
    def __call__(
        self, *, workers: int = 2, stubborn: str | None = None, no_deathsig: str | None = None
    ) -> Supervised: ...


@pytest.fixture
def start_supervised(tmp_path: Path) -> Iterator[StartSupervised]:
    started: list[Supervised] = []
    # Shared by the supervisors of one test, as /tmp is by those of one host.
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()

    def start(
        *, workers: int = 2, stubborn: str | None = None, no_deathsig: str | None = None
    ) -> Supervised:
        run_dir = tmp_path / f"run{len(started)}"
        run_dir.mkdir()
        events, log_path, socket_path = (run_dir / "events", run_dir / "log", run_dir / "sock")
        command = [
            sys.executable, "-m", "tests.support.supervised", str(events), str(socket_path),
            "--workers", str(workers), "--heartbeat-timeout", str(timeout(2)),
            "--kill-grace", str(timeout(1)),
        ]  # fmt: skip
        if stubborn:
            command += ["--stubborn", stubborn]
        if no_deathsig:
            command += ["--no-deathsig", no_deathsig]
        env = {**os.environ, "TMPDIR": str(temp_dir)}
        with log_path.open("wb") as log_file:
            # A session of its own: teardown kills the whole tree by its group.
            process = subprocess.Popen(
                command, cwd=REPO, stdout=log_file, stderr=log_file, start_new_session=True,
                env=env,
            )  # fmt: skip
        supervised = Supervised(process, events, log_path, socket_path, workers, temp_dir)
        started.append(supervised)
        return supervised

    yield start
    for supervised in started:
        # The group outlives the supervisor while any child a failed test left runs.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervised.process.pid, signal.SIGKILL)
        supervised.process.wait()


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie not yet reaped by init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_every_slot_starts_named_with_its_arguments(start_supervised: StartSupervised) -> None:
    supervised = start_supervised(workers=3)
    running = supervised.running()
    assert sorted(running) == ["router", "worker-1", "worker-2", "worker-3"]
    for name, pid in running.items():
        assert _ppid(pid) == supervised.process.pid
        assert _comm(pid) == f"npg-{name}"
    # With --socket-path the supervisor binds once and every worker inherits it.
    for i in range(1, 4):
        assert f"start worker-{i} {running[f'worker-{i}']} listener" in supervised.lines()
    assert f"start router {running['router']}" in supervised.lines()
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_exit() == 0
    assert not supervised.socket_path.exists()


@pytest.mark.parametrize("name", ["router", "worker-2"])
def test_a_child_that_exits_is_restarted_in_its_slot(
    start_supervised: StartSupervised, name: str
) -> None:
    supervised = start_supervised(workers=2)
    before = supervised.running()
    os.kill(before[name], signal.SIGUSR1)
    wait_for(lambda: len(supervised.pids(name)) == 2, 10, f"{name} to be restarted")
    after = supervised.running()
    assert _comm(after[name]) == f"npg-{name}"
    assert f"{name} (pid {before[name]}) exited with 3" in supervised.log()
    # The others were left alone.
    assert {n: p for n, p in after.items() if n != name} == {
        n: p for n, p in before.items() if n != name
    }
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_exit() == 0


def test_a_child_that_stops_heartbeating_is_killed_and_restarted(
    start_supervised: StartSupervised,
) -> None:
    supervised = start_supervised(workers=2)
    before = supervised.running()
    os.kill(before["worker-1"], signal.SIGUSR2)  # still running, no longer beating
    wait_for(lambda: len(supervised.pids("worker-1")) == 2, 15, "worker-1 to be restarted")
    assert _gone(before["worker-1"])
    assert "worker-1 stopped heartbeating" in supervised.log()
    after = supervised.running()
    # The children that kept beating were not taken for stuck ones.
    assert (after["router"], after["worker-2"]) == (before["router"], before["worker-2"])
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_exit() == 0


def test_sigterm_stops_the_workers_first_then_the_router(
    start_supervised: StartSupervised,
) -> None:
    supervised = start_supervised(workers=2)
    running = supervised.running()
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_exit() == 0
    stops = [name for event, name, _ in supervised.events() if event == "stop"]
    assert sorted(stops[:2]) == ["worker-1", "worker-2"]
    assert stops[2:] == ["router"]
    assert all(_gone(pid) for pid in running.values())
    assert not supervised.socket_path.exists()


def test_a_child_that_ignores_sigterm_is_killed_after_the_deadline(
    start_supervised: StartSupervised,
) -> None:
    supervised = start_supervised(workers=2, stubborn="worker-1")
    running = supervised.running()
    supervised.process.send_signal(signal.SIGTERM)
    assert supervised.wait_exit() == 0
    assert "worker-1 did not stop in time; killing it" in supervised.log()
    assert _gone(running["worker-1"])
    events = [(event, name) for event, name, _ in supervised.events() if event != "start"]
    assert ("ignore", "worker-1") in events
    assert ("stop", "worker-1") not in events
    # The router waited for the stubborn worker's deadline before it was asked to stop.
    assert events[-1] == ("stop", "router")


def _kill_supervisor(supervised: Supervised) -> None:
    supervised.process.kill()
    supervised.process.wait(timeout(10))


def _deathsigs(supervised: Supervised) -> dict[str, int]:
    """Child name -> the parent-death signal it recorded running with."""
    words = [line.split() for line in supervised.lines()]
    return {w[1]: int(w[3]) for w in words if w[0] == "deathsig"}


def test_children_end_when_the_supervisor_is_killed(start_supervised: StartSupervised) -> None:
    supervised = start_supervised(workers=2)
    running = supervised.running()
    # The kernel is to tell each child, with SIGTERM, when the supervisor dies.
    assert _deathsigs(supervised) == dict.fromkeys(running, int(signal.SIGTERM))
    _kill_supervisor(supervised)
    wait_for(lambda: all(_gone(pid) for pid in running.values()), 5, "every child to end")
    # Each was stopped the graceful way, by a SIGTERM (the parent-death signal).
    stops = {name for event, name, _ in supervised.events() if event == "stop"}
    assert stops == set(running)


def test_a_child_without_the_death_signal_stops_on_its_heartbeat(
    start_supervised: StartSupervised,
) -> None:
    supervised = start_supervised(workers=1, no_deathsig="worker-1")
    running = supervised.running()
    assert _deathsigs(supervised)["worker-1"] == 0
    _kill_supervisor(supervised)
    wait_for(lambda: _gone(running["worker-1"]), 5, "worker-1 to see its supervisor is gone")
    assert ("stop", "worker-1", running["worker-1"]) in supervised.events()
    assert f"the supervisor (pid {supervised.process.pid}) is gone; stopping" in supervised.log()


def test_a_new_supervisor_removes_the_ipc_directory_a_killed_one_left(
    start_supervised: StartSupervised,
) -> None:
    killed = start_supervised(workers=1)
    running = killed.running()
    (left,) = killed.ipc_dirs()
    _kill_supervisor(killed)
    wait_for(lambda: all(_gone(pid) for pid in running.values()), 5, "every child to end")
    assert left.is_dir()  # nobody cleaned up after a SIGKILL
    # A live supervisor's directory (this process stands in for it) and one
    # without a pid in its name are not a new supervisor's to remove.
    live = killed.temp_dir / f"notify-push-gateway-{os.getpid()}-live"
    unnamed = killed.temp_dir / "notify-push-gateway-abcd1234"
    live.mkdir()
    unnamed.mkdir()
    second = start_supervised(workers=1)
    second.running()
    assert not left.exists()
    assert live.is_dir() and unnamed.is_dir()
    assert len(second.ipc_dirs()) == 1
    second.process.send_signal(signal.SIGTERM)
    assert second.wait_exit() == 0
    assert second.ipc_dirs() == []
