"""The app container: manifests, app contexts, the supervisor and the loop watchdog.

Layer: runtime. Loads apps from ``apps/<name>/app.toml``, hands each an
``AppContext`` scoped to its manifest, supervises its task, and names the app
that blocks the event loop. It must not import any app except through the
manifest's entry point, and knows nothing of grid or protocol specifics. ``AppContext`` is the
protocol apps are typed against (``runtime.api``); ``LocalContext`` the in-process implementation.
"""

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
