"""Process isolation of apps: the bridge (runtime side), the app host (the app's process), the wire.

Layer: runtime. Modules:

* ``wire``     -- frames (length + JSON) and the codecs of what crosses (manifests, errors, hal values);
* ``channel``  -- one end of a connection: ordered frames, requests paired with replies;
* ``bridge``   -- the runtime's socket server; one ``AppSession`` per host enforces its manifest;
* ``hal_ops``  -- the runtime's side of hal requests, run against the real hal through the app's scoped hal;
* ``runner``   -- starts, watches and kills host processes for the supervisor;
* ``limits``   -- memory and CPU limits a host applies to itself before importing app code;
* ``host``     -- ``python -m runtime.container.isolation.host``: the app's process and its proxied context;
* ``hal_proxy`` -- the hal of an isolated app (proxies of ports, carrier, metrology, slots).

Must not import any app except through a manifest's entry point (in the host).
"""

from runtime.container.isolation.bridge import SOCKET_NAME, Bridge, IsolationSettings

__all__ = ["SOCKET_NAME", "Bridge", "IsolationSettings"]
