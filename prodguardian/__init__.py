"""ProdGuardian: is production healthy right now, and if not, why and what to do."""

__version__ = "0.1.0"
