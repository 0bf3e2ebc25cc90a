"""Qt item models over the domain's state (fleetdesk.fleet.state, store)."""
