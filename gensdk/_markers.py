"""The two pluggy markers. Plugins import only `gensdk.hookimpl`."""

import pluggy

PROJECT_NAME = "gensdk"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
