"""fleetdesk.cloud"""
