"""timeline_svc."""
