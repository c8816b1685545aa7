"""The Microsoft Graph adapter of the CalendarSource port (Exchange Online)."""
