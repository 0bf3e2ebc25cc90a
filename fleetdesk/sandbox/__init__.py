"""fleetdesk.sandbox"""
