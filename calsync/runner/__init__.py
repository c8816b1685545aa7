"""The sync engine's orchestration in plain Python: one batch, one step, one chunk of polls.

A Celery task only opens what this package needs (settings, a source) and turns a Step into
Celery calls (retry, next batch, notification); everything that decides what a batch or a
poll means for an operator (pause, failure, notification rules) lives here, so tests run it
without Celery. Data flows source -> sync (pure planning) -> store (lifecycle, mirror).
"""
