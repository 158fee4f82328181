"""Live fusion (pure): trade flow and book figures of the live market, placed against the
structure document (levels, value areas, zones, regime, trend), and the level events."""
