"""python -m fanout_svc: writes new tweets into followers' home timelines."""

from fanout_svc.server import setup
from meshkit.runtime import main

main("fanout", setup, needs_database=False)
