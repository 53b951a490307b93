"""The sync engine (DESIGN.md §3-§5): devices, ordered exactly-once replay, download, change
feed and live push. Logic modules hold no socket code; `socket.py` is the thin handler."""

from webapp.sync import tables as tables  # registers its tables on the shared metadata
