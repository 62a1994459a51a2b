"""Prototypes behind the tuning recommendations in the README; not product code."""
