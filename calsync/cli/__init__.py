"""The `calsync` command: everything an administrator does, one subcommand group per domain."""
