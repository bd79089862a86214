"""Media monitoring for campaign teams: feeds -> SQLite -> Datasette."""

__version__ = "0.1.0"
