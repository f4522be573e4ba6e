"""The admin page (`/admin`): the page and its login (`page`), and the figures each process
publishes to the stats channel for it (`figures`). Off unless `Config.admin`."""

from .figures import StatsPublisher, figures
from .page import AdminPage

__all__ = ["AdminPage", "StatsPublisher", "figures"]
