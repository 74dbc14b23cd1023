"""notifications_svc: each account's notifications, made from the event streams (schema `notifications`)."""
