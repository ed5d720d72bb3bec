"""Benchmark runs that cannot fool us: each timed run waits for a quiet machine, HF and ours alternate over several
rounds, and every run records how much CPU other processes took while it ran.

A 2-core machine shared with anything else measures the contention, not the code (and torch loses far more to it
than paddle). So before each run: the 1-minute load average under a threshold, and no process of ours (tests, nox,
another benchmark, training) running. During each run: the CPU time all processes used (/proc/stat) less the
run's own (its rusage), as a share of the run's wall time; a run where others took more than
``UNRELIABLE_SHARE`` of a core is marked, and so is every ratio it enters.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

UNRELIABLE_SHARE = 0.1  # cores: more than a tenth of a core taken by other processes during a run
# What counts as "ours" when waiting for a quiet machine: test runners, sessions, training and benchmark scripts.
OUR_COMMANDS = ("pytest", "nox", "blip2-train", "blip2-eval", "blip2-predict", "blip2-serve", "tools/bench",
                "blip2-shapes", "paddle.distributed.launch", "blip2_train")  # fmt: skip


@dataclass
class RunRecord:
    command: str
    returncode: int
    wall_s: float
    own_cpu_s: float
    others_cpu_s: float
    load_before: float
    load_after: float
    quiet_before: bool
    waited_s: float

    @property
    def others_share(self) -> float:
        """Cores' worth of CPU other processes used on average while this run ran."""
        return self.others_cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def reliable(self) -> bool:
        return self.returncode == 0 and self.quiet_before and self.others_share <= UNRELIABLE_SHARE


def busy_cpu_seconds() -> float:
    """CPU seconds every process of the machine has used since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_1m() -> float:
    return os.getloadavg()[0]


def _ancestors(pid: int) -> set[int]:
    found = set()
    while pid > 1:
        found.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def our_other_processes() -> list[str]:
    """Command lines of our tools running beside this benchmark (its own process and parents excluded)."""
    mine = _ancestors(os.getpid())
    busy = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if command and any(name in command for name in OUR_COMMANDS):
            busy.append(command[:120])
    return busy


def wait_until_quiet(threshold: float, timeout: float, poll: float = 5.0) -> tuple[bool, float]:
    """Wait until the 1-minute load is under ``threshold`` with none of our other processes running; returns
    (quiet, seconds waited). Not quiet after ``timeout``: the run goes ahead, marked."""
    started = time.monotonic()
    while True:
        if load_1m() < threshold and not our_other_processes():
            return True, time.monotonic() - started
        if time.monotonic() - started > timeout:
            return False, time.monotonic() - started
        time.sleep(poll)


def measured_run(command: Sequence[str], env: dict[str, str] | None, threshold: float, timeout: float) -> RunRecord:
    """Run ``command`` once the machine is quiet; the CPU others took meanwhile is recorded."""
    quiet, waited = wait_until_quiet(threshold, timeout)
    load_before, busy_before, started = load_1m(), busy_cpu_seconds(), time.monotonic()
    process = subprocess.Popen(list(command), env=env)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    busy = busy_cpu_seconds() - busy_before
    own = usage.ru_utime + usage.ru_stime
    return RunRecord(
        command=" ".join(command),
        returncode=os.waitstatus_to_exitcode(status),
        wall_s=wall,
        own_cpu_s=own,
        others_cpu_s=max(busy - own, 0.0),
        load_before=load_before,
        load_after=load_1m(),
        quiet_before=quiet,
        waited_s=waited,
    )


def attach(result_file: Path, record: RunRecord, round_number: int) -> Path:
    """Move a run's result JSON to its round's name, with the run's record inside; returns the new path."""
    target = result_file.with_name(f"{result_file.stem}-r{round_number}.json")
    result = json.loads(result_file.read_text()) if result_file.exists() else {"failed": True}
    result["run"] = {**asdict(record), "others_share": record.others_share, "reliable": record.reliable}
    target.write_text(json.dumps(result))
    result_file.unlink(missing_ok=True)
    return target


def spread(values: Sequence[float]) -> str:
    """Median and range: "0.257 [0.230-0.283]"."""
    if not values:
        return "n/a"
    return f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"
