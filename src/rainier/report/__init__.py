"""Presentation: rich tables for people (JSON comes from each result's ``to_dict``)."""
