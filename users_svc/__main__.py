"""python -m users_svc: accounts, sessions and the follow graph."""

from meshkit.runtime import main
from users_svc.server import RATE_LIMITS, setup
from users_svc.settings import SERVICE, load_settings

main(SERVICE, load_settings, setup, RATE_LIMITS)
