"""python -m media_svc: uploads of images and video, and serving them."""

from media_svc.server import MAX_REQUEST_BYTES, RATE_LIMITS, setup
from media_svc.settings import SERVICE, load_settings
from meshkit.runtime import main

main(SERVICE, load_settings, setup, RATE_LIMITS, MAX_REQUEST_BYTES)
