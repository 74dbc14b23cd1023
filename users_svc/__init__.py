"""users_svc: accounts, credentials, sessions and the follow graph (PostgreSQL schema `users`)."""
