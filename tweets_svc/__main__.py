"""python -m tweets_svc: tweets, and their events for fan-out."""

from meshkit.runtime import main
from tweets_svc.server import RATE_LIMITS, setup
from tweets_svc.settings import SERVICE, load_settings

main(SERVICE, load_settings, setup, RATE_LIMITS)
