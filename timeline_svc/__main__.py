"""python -m timeline_svc: home timeline reads and live streams."""

from meshkit.runtime import main
from timeline_svc.server import setup

main("timeline", setup, needs_database=False)
