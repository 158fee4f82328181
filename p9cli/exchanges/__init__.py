"""p9cli.exchanges: one module per exchange (``binance``, ``bybit``, ``okx``): pure REST request
building and parsing, and each exchange's live ``VENUE`` (``venue.py``: normalized events and the
Venue description; ``book.py``: the book-sync machines). See docs/venues.md."""
