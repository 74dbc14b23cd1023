"""python -m timeline_svc: home timeline reads and live streams."""

from meshkit.runtime import main
from timeline_svc.server import RATE_LIMITS, setup
from timeline_svc.settings import SERVICE, load_settings

main(SERVICE, load_settings, setup, RATE_LIMITS)
