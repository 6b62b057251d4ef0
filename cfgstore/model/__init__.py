"""Entities and the byte-faithful file formats of AIClient-2-API (attrs + cattrs)."""
