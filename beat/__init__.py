"""The beat schedule (celery-redbeat); see schedule.py."""
