"""`python -m tuner` runs the agetune command line."""

from tuner.cli import app

app()
