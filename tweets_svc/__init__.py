"""tweets_svc: tweets and all attached to them (PostgreSQL schema `tweets`), and their events."""
