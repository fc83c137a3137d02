"""Measuring processes and the machine: CPU and RSS from /proc, a child's rusage, timing."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .common import ROOT


def cpu_seconds(pid: int) -> float | None:
    """user+system CPU seconds of a live pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: list[int]) -> dict[int, float]:
    """user+system CPU seconds of each live pid."""
    out = {}
    for pid in pids:
        cpu = cpu_seconds(pid)
        if cpu is not None:
            out[pid] = cpu
    return out


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs together spent busy since boot (from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def status_kb(pid: int, *keys: str) -> dict[str, int]:
    """Fields of /proc/<pid>/status in kB (VmRSS, VmHWM, ...)."""
    out = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name in keys:
            out[name] = int(value.split()[0])
    return out


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (postmaster and backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def mb(kb: int) -> float:
    return kb / 1024


@dataclass
class ChildRun:
    """One child process, run to its end: wall time, its own CPU and peak RSS, output."""

    seconds: float
    cpu: float  # user + system of the child itself (wait4), not of this process
    maxrss_mb: float  # ru_maxrss: inherits this process's mark over fork+exec (see README)
    returncode: int
    stdout: str
    stderr: str


def run_child(cmd: list[str], env: dict[str, str]) -> ChildRun:
    """Run cmd in the checkout's root and wait4 for it (its own rusage; RUSAGE_CHILDREN
    would be the maximum of all children)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode()
    err = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(
        seconds=seconds,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        returncode=process.returncode,
        stdout=out,
        stderr=err,
    )
