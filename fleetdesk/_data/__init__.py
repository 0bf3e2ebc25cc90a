"""Data the package carries: ``resources`` and ``firmware`` (the checkout's top-level folders,
mapped here by setup.py; read them through fleetdesk.paths)."""
