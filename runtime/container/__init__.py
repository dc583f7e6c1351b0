"""The app container: manifests, app contexts, the supervisor and the loop watchdog.

Layer: runtime. Loads apps from ``apps/<name>/app.toml``, hands each an
``AppContext`` scoped to its manifest, supervises its task, and names the app
that blocks the event loop. It must not import any app except through the
manifest's entry point, and knows nothing of grid or protocol specifics. ``AppContext`` is the
protocol apps are typed against (``runtime.api``); ``LocalContext`` the in-process implementation.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.api import AppContext, AppStore, TerminalInfo, UplinkClient
    from runtime.container.context import (
        AppContextFactory,
        ContextFactory,
        HalAccess,
        LocalContext,
        NamespacedStore,
    )
    from runtime.container.isolation.bridge import Bridge, IsolationSettings
    from runtime.container.manifest import (
        ConfigField,
        Limits,
        Manifest,
        RestartPolicy,
        check_manifests,
        load_manifest,
        resolve_config,
    )
    from runtime.container.supervisor import STATUS_FILE, AppState, Supervisor
    from runtime.container.watchdog import LoopWatchdog, Stall

_WHERE = {
    "STATUS_FILE": "runtime.container.supervisor",
    "AppContext": "runtime.api",
    "AppContextFactory": "runtime.container.context",
    "AppState": "runtime.container.supervisor",
    "AppStore": "runtime.api",
    "Bridge": "runtime.container.isolation.bridge",
    "ConfigField": "runtime.container.manifest",
    "ContextFactory": "runtime.container.context",
    "HalAccess": "runtime.container.context",
    "IsolationSettings": "runtime.container.isolation.bridge",
    "Limits": "runtime.container.manifest",
    "LocalContext": "runtime.container.context",
    "LoopWatchdog": "runtime.container.watchdog",
    "Manifest": "runtime.container.manifest",
    "NamespacedStore": "runtime.container.context",
    "RestartPolicy": "runtime.container.manifest",
    "Stall": "runtime.container.watchdog",
    "Supervisor": "runtime.container.supervisor",
    "TerminalInfo": "runtime.api",
    "UplinkClient": "runtime.api",
    "check_manifests": "runtime.container.manifest",
    "load_manifest": "runtime.container.manifest",
    "resolve_config": "runtime.container.manifest",
}


def __getattr__(name: str) -> Any:
    """Import what is asked for only when it is asked for: ``runtime.container.manifest`` alone
    (``ttu check``) must not load the supervisor, the bridge and the hal they use."""
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "STATUS_FILE",
    "AppContext",
    "AppContextFactory",
    "AppState",
    "AppStore",
    "Bridge",
    "ConfigField",
    "ContextFactory",
    "HalAccess",
    "IsolationSettings",
    "Limits",
    "LocalContext",
    "LoopWatchdog",
    "Manifest",
    "NamespacedStore",
    "RestartPolicy",
    "Stall",
    "Supervisor",
    "TerminalInfo",
    "UplinkClient",
    "check_manifests",
    "load_manifest",
    "resolve_config",
]
