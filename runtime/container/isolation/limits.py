"""Resource limits an app host applies to itself before it imports app code.

Layer: runtime, used only inside the app host process (``runtime.container.isolation.host``).
It must not be called in the runtime's own process: the limits are irreversible.

Memory, ``limits.memory_mb`` of the manifest, counted on top of what the host
itself uses at the moment the limit is set (the interpreter and the runtime's
modules, about 25 MB), so ``memory_mb`` is the app's own budget:

* cgroup v2, when the runtime's cgroup has a writable parent with the ``memory``
  controller delegated (systemd ``Delegate=yes``, runtime in a leaf child): the
  host moves into a sibling ``ttu-app-<name>-<pid>`` with ``memory.max`` set.
  Charges are not migrated on a move, so the budget counts new allocations only.
  Exceeding it gets the process OOM-killed (SIGKILL) by the kernel.
* otherwise ``RLIMIT_AS`` (soft and hard, so the app cannot raise it back) at the
  current address-space size plus ``memory_mb``; exceeding it makes allocations
  fail with ``MemoryError``, which the host turns into exit status ``EXIT_MEMORY``.

CPU: the niceness is raised to ``nice`` (never lowered: that needs privilege).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True, slots=True)
class AppliedLimits:
    """What the host actually applied; sent to the runtime and logged."""

    memory: str  # "cgroup" | "rlimit_as" | "none"
    memory_bytes: int | None
    nice: int
    detail: str
    cgroup: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "memory": self.memory,
            "memory_bytes": self.memory_bytes,
            "nice": self.nice,
            "detail": self.detail,
            "cgroup": self.cgroup,
        }


def _vm_size() -> int:
    """The process's current address-space size in bytes (``VmSize``)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _own_cgroup(root: Path) -> Path:
    with open("/proc/self/cgroup", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("0::"):
                return root / line[3:].strip().lstrip("/")
    raise OSError("not in a cgroup v2 hierarchy")


def _try_cgroup(app: str, budget: int, root: Path) -> tuple[Path | None, str]:
    """Move this process into a memory-limited sibling cgroup; (None, why not) if impossible."""
    if not (root / "cgroup.controllers").exists():
        return None, f"no cgroup v2 hierarchy at {root}"
    try:
        parent = _own_cgroup(root).parent
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            return None, f"memory controller not delegated in {parent}"
        child = parent / f"ttu-app-{app}-{os.getpid()}"
        child.mkdir()
        try:
            (child / "memory.max").write_text(str(budget))
            (child / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            child.rmdir()
            raise
    except OSError as err:
        return None, f"cgroup not writable: {err.strerror or err}"
    return child, f"cgroup v2 memory.max={budget} in {child}"


def _set_nice(target: int) -> tuple[int, str]:
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target <= current:
        return current, f"nice stays {current} (asked {target}; lowering needs privilege)"
    os.setpriority(os.PRIO_PROCESS, 0, target)
    return target, f"nice {target}"


def apply_limits(
    *, app: str, memory_mb: int, nice: int, cgroup_root: Path = CGROUP_ROOT, use_cgroup: bool = True
) -> AppliedLimits:
    """Limit this process's memory and CPU priority; irreversible for the process."""
    budget = memory_mb * MIB
    niceness, nice_detail = _set_nice(nice)
    why_not = "cgroups disabled"
    if use_cgroup:
        child, why_not = _try_cgroup(app, budget, cgroup_root)
        if child is not None:
            return AppliedLimits("cgroup", budget, niceness, f"{why_not}; {nice_detail}", str(child))
    limit = _vm_size() + budget
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    detail = f"RLIMIT_AS={limit} ({memory_mb} MB above the host's {limit - budget} bytes; {why_not}); "
    return AppliedLimits("rlimit_as", limit, niceness, detail + nice_detail)


__all__ = ["CGROUP_ROOT", "AppliedLimits", "apply_limits"]
