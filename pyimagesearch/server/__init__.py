"""The web service and page for a trained pokedex model (serve.py starts it)."""

from pyimagesearch.server.app import create_app
from pyimagesearch.server.settings import Settings

__all__ = ["Settings", "create_app"]
