"""fanout_svc: writes tweets into followers' home timelines from the event streams; its admin API."""
