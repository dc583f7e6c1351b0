"""The ground every layer of ttu stands on: time, error roots, cancellation, the app package format.

Layer: base, below hal, runtime and sim (and beside protocols). What the terminal and the
simulator both need and neither may own: the ``Clock`` every timer goes through
(``base.clock``), the roots of the error tree (``base.errors``), keeping a task cancellable
across third-party awaits (``base.cancellation``) and the signed ``.ttuapp`` format that the
terminal installs and the cloud catalog publishes (``base.packages``).

Must not import hal, runtime, apps, sim or protocols: everything here is below them.
"""
