"""The admin console: a server-rendered web application over the same store functions as the CLI.

Every change goes through calsync.store.operators, .settings and .status (the functions the
CLI uses); the console's own queries are read-only (calsync.store.console). Run it with
`calsync console serve`.
"""
