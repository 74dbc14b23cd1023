"""fanout_svc."""
