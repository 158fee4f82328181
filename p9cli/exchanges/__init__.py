"""p9cli.exchanges: one module per exchange; pure request building and parsing."""
