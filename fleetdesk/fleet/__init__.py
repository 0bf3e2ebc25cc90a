"""fleetdesk.fleet"""
