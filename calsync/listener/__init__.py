"""The push listener (`calsync listener serve`): see calsync.listener.app."""
