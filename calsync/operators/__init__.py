"""Operators (CRM users whose calendars are mirrored): pure rules, no database code."""
