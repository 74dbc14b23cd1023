"""python -m notifications_svc: notifications from the event streams, and their reads."""

from meshkit.runtime import main
from notifications_svc.server import RATE_LIMITS, setup
from notifications_svc.settings import SERVICE, load_settings

main(SERVICE, load_settings, setup, RATE_LIMITS)
