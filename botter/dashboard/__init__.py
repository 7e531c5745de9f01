"""botter-dashboard: a local web page over run folders and their paper runs (read-only)."""
