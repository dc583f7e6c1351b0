"""Test app: the surveyor's code with a manifest that may only read the station model and send nothing."""

from tests.runtime.isolation.fixture_apps.surveyor import run

__all__ = ["run"]
