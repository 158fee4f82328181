"""One module per command: the I/O edge that wires settings, the store, the pure logic and the
terminal output together.

Every service has the same shape: ``run(settings, *, <the command's own options>, out=None)
-> int`` returns the exit code (0 done, 1 some work failed, the others kept), and raises
:class:`p9cli.errors.P9Error` (one line, its own exit code: 2 bad input, 75 locked) for a run
that cannot start. ``cli.py`` parses options, builds the settings and calls ``run``; the
services never parse argv and never exit the process themselves.
"""
