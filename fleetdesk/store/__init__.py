"""fleetdesk.store"""
