"""meshkit."""
