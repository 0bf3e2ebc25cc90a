"""fleetdesk.boards"""
