"""python -m users_svc: accounts, sessions and the follow graph."""

from meshkit.runtime import main
from users_svc.server import setup

main("users", setup)
