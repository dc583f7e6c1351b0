"""Child process of test_sigkill: upgrade ``demo`` and SIGKILL itself right after journal step X.

Usage: python -m tests.runtime.packages.kill_install STATE_DIR PACKAGE STEP PRIVATE_KEY_HEX
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.runtime.packages.lifecycle import rig


async def main(state: Path, package: Path, step: str, key: Ed25519PrivateKey) -> None:
    async with rig(state, key, grace_s=0.2) as r:
        real = r.manager._step

        async def step_then_die(txn: Any, name: str) -> None:
            await real(txn, name)
            if name == step:
                os.kill(os.getpid(), signal.SIGKILL)

        r.manager._step = step_then_die  # type: ignore[method-assign]
        await r.manager.install(package, upgrade=True)
    raise SystemExit(f"step {step!r} was never reached")


if __name__ == "__main__":
    state_dir, pkg, at, key_hex = sys.argv[1:5]
    asyncio.run(
        main(Path(state_dir), Path(pkg), at, Ed25519PrivateKey.from_private_bytes(bytes.fromhex(key_hex)))
    )
