"""Qt item models over the domain's state (fleetdesk.cloud.fleet_state, store)."""
