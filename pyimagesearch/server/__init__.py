"""The web service and page for a trained pokedex model (serve.py starts it)."""

from pyimagesearch.server.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name):  # the app (FastAPI, the model loader) only when asked for
    if name == "create_app":
        from pyimagesearch.server.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
