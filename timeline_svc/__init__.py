"""timeline_svc: home timeline pages and the home and global live streams."""
