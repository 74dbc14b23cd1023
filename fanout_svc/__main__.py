"""python -m fanout_svc: writes new tweets into followers' home timelines."""

from fanout_svc.server import setup
from fanout_svc.settings import SERVICE, load_settings
from meshkit.runtime import main

main(SERVICE, load_settings, setup)
