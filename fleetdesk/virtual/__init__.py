"""fleetdesk.virtual"""
