"""users_svc."""
