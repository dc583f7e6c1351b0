"""What the terminal side of an in-process simulated run imported, and the RSS of that alone.

Not a test. ``bench/simday.py`` runs the simulator and the terminal in one process, so the
process's RSS is the world's and the terminal's together. The terminal's share of the
interpreter is measured apart: a fresh interpreter imports what the terminal side of the run
really loaded and reports its RSS (``baseline_kb``).

What the terminal side loaded (``TerminalImports``, watched during the run):

* every module of runtime/, apps/ and hal/ in ``sys.modules`` at the end, except the command line
  (runtime.cli: the fresh interpreter goes through ``ttu run``'s own path instead, below) and the
  simulated hal (hal.sim), which a box does not run;
* every other module (of protocols/, a library, the standard library) that an import statement or
  ``importlib.import_module`` asked for while the innermost frame of runtime/, apps/ or hal/ on
  the stack was terminal code -- a lazy import inside a function counts when the terminal reaches
  it, even when the simulator had loaded the module first; a module only the simulator asked for
  does not count. protocols/ is shared by both sides: its frames go to whoever called them (a
  codec the simulator imported, and what that codec imports, is not the terminal's).

How the fresh interpreter runs (``baseline_kb``), as the box's service unit
(``hal/linux/ttu.service``) runs ``ttu run``: with the unit's environment (``PYTHONOPTIMIZE``,
``PYTHONNODEBUGRANGES``), from compiled
bytecode (a box's modules load from ``.pyc`` files: pip compiles at install, Python at the
first start; a first run into a private cache writes them, the second is measured, so the
compiler's own garbage is not counted), through ``runtime.cli``'s parser for ``run`` (the
dispatcher, argparse, the entry points lookup), and it hands the allocator's free pages back
(``runtime.heap.give_back``, which the terminal calls hourly) before reading its RSS.

What this must not do: import the simulator, pandapower or amqtt into the fresh interpreter
(``baseline_kb`` fails if they come in), or count a library the terminal never asked for.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TERMINAL_PACKAGES = ("runtime", "apps", "hal", "protocols")
#: parts of the terminal's packages a box does not run (runtime.cli: ``ttu run`` loads only its own)
NOT_ON_A_BOX = ("runtime.cli", "hal.sim")
#: shared codecs: their frames decide nothing, the modules count when terminal code asks for them
SHARED = "protocols"
#: the box's service unit: the bench's fresh interpreter runs with its ``Environment=`` lines
SERVICE_UNIT = ROOT / "hal" / "linux" / "ttu.service"
#: the world's own: never in the terminal's interpreter
WORLD = ("sim", "pandapower", "amqtt", "bench", "tests")


def _is_terminal_file(path: str, root: str) -> bool | None:
    """True for terminal code, False for other repository code, None outside the repository or
    in the shared codecs (protocols/: whoever called them decides)."""
    if not path.startswith(root) or "/.venv/" in path:
        return None
    rel = path[len(root) :]
    top = rel.split("/", 1)[0]
    if top == SHARED:
        return None
    if top not in TERMINAL_PACKAGES:
        return False
    return not rel.startswith(("runtime/cli/", "hal/sim/"))


class TerminalImports:
    """Records the modules the terminal side asks for while active (a context manager)."""

    def __init__(self) -> None:
        self.asked: set[str] = set()
        self._root = str(ROOT) + "/"
        self._import = builtins.__import__
        self._import_module = importlib.import_module

    def _terminal_asks(self, frame: FrameType | None) -> bool:
        while frame is not None:
            side = _is_terminal_file(frame.f_code.co_filename, self._root)
            if side is not None:
                return side
            frame = frame.f_back
        return False

    def __enter__(self) -> TerminalImports:
        original, original_module, asked = self._import, self._import_module, self.asked

        def watched_import(
            name: str, scope: Any = None, local: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            module = original(name, scope, local, fromlist, level)
            if self._terminal_asks(sys._getframe(1)):
                base = name
                if level:
                    package = (scope or {}).get("__package__") or ""
                    base = importlib.util.resolve_name("." * level + name, package)
                asked.add(base)
                for item in fromlist or ():
                    if f"{base}.{item}" in sys.modules:
                        asked.add(f"{base}.{item}")
            return module

        def watched_import_module(name: str, package: str | None = None) -> Any:
            module = original_module(name, package)
            if self._terminal_asks(sys._getframe(1)):
                asked.add(module.__name__)
            return module

        builtins.__import__ = watched_import
        importlib.import_module = watched_import_module  # type: ignore[assignment]
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        builtins.__import__ = self._import
        importlib.import_module = self._import_module

    def modules(self) -> list[str]:
        """The modules a fresh interpreter imports to stand for the terminal side of the run."""
        loaded = set(sys.modules)
        owned = tuple(p for p in TERMINAL_PACKAGES if p != SHARED)
        ours = {m for m in loaded if m.split(".")[0] in owned and not m.startswith(NOT_ON_A_BOX)}
        asked = {m for m in self.asked & loaded if m.split(".")[0] not in (*owned, *WORLD, "__main__")}
        return sorted(ours | asked)


def box_environment() -> dict[str, str]:
    """The variables the box's service unit sets for ``ttu run`` (its ``Environment=`` lines)."""
    try:
        text = SERVICE_UNIT.read_text(encoding="utf-8")
    except OSError:
        return {}
    return dict(re.findall(r"^Environment=(\w+)=(\S*)\s*$", text, re.MULTILINE))


def baseline_kb(modules: list[str]) -> int:
    """RSS (kB) of a fresh interpreter that has imported ``modules`` and ``ttu run``'s own path,
    and nothing of the world, run as the box runs it (module docstring)."""
    code = (
        "import gc, importlib, sys\n"
        "from runtime import heap\n"
        "from runtime.cli import build_parser\n"
        "build_parser(['run']).parse_args(['run'])\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {WORLD!r})\n"
        "if bad:\n"
        "    raise SystemExit(f'the world came in: {bad}')\n"
        "gc.collect()\n"
        "heap.give_back()\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS:')][0].split()[1])\n"
    )
    with tempfile.TemporaryDirectory(prefix="ttu-pyc-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(box_environment())
        env.update(PYTHONPATH=str(ROOT), PYTHONPYCACHEPREFIX=cache)
        for _ in range(2):  # the first run compiles into the cache, the second loads from it
            out = subprocess.run(
                [sys.executable, "-P", "-c", code, *modules], cwd=ROOT, capture_output=True, text=True,
                check=True, env=env,
            )  # fmt: skip
    return int(out.stdout.strip())
