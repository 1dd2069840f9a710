"""Calling upstream services: forwarding, instance choice, deadlines."""
