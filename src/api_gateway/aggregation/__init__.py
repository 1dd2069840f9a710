"""Aggregation: one client request answered from several services (README: "Aggregation")."""
