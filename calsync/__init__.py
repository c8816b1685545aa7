"""calsync: mirror Microsoft Exchange calendars into a CRM's Postgres calendar.

The package stays light on import: `celery -A calsync` finds the Celery app in
`calsync.celery`, and pure modules (calsync.sync) import neither Celery nor I/O libraries.
"""

__version__ = "0.1.0"
