"""tweets_svc."""
