"""The one project name pluggy knows ftx by: hook markers for specs and implementations."""

from __future__ import annotations

import pluggy

PROJECT_NAME = "ftx"
"""Name shared by the markers, the entry-point group and (as ``ftx_``) every hook."""

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
