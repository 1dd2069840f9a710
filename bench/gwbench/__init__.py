"""The api-gateway benchmark: tools, servers, load generation, measurement and the report.

``bench/run.py`` is the entry point; this package holds its parts, one concern per module.
"""
