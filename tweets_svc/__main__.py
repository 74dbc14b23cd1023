"""python -m tweets_svc: tweets, and their events for fan-out."""

from meshkit.runtime import main
from tweets_svc.server import setup

main("tweets", setup)
