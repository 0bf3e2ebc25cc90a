"""fleetdesk.ble"""
