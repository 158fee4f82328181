"""Terminal views of the live half, read only from Redis: ``p9 status`` (status.py) and
``p9 watch`` (watch.py).

Each view is a pure function from plain payload dicts (as ``p9 stream`` publishes them) and a
``now_ms`` to a Rich renderable, separate from the refresh loop in ``p9cli/services/``; the same
renderable prints to a terminal, to a string (tests) or to SVG (``Console(record=True).save_svg``,
the README's pictures).
"""
