"""The soak: calsync run for a long time under random faults while users keep editing.

Not part of the product (nothing in calsync imports it): it starts a private Redis Sentinel
group and Postgres, an SMTP sink, the simulator pushing to a supervised listener, and
supervised workers and beats, edits mailboxes at a steady rate, injects faults from a
pluggable list (soak/faults.py), samples queue depth, latency, errors and worker memory,
and at the end checks the promises: every mirror equals the simulator's truth, no failure
email twice for one episode, worker memory flat after warm-up, no secret in any log. `make soak` (SOAK_MINUTES, default 30); a 3-minute smoke runs
in `make test` (tests/soak/).
"""
