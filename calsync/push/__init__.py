"""Push notifications: what is common to the listener, the tasks and the store (no I/O here)."""
