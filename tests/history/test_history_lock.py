"""The cron lock: a second run exits at once with its own code; a killed holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from p9cli.errors import EXIT_LOCKED, LockedError
from p9cli.history.lock import HistoryLock

HOLDER = "import sys,time; from p9cli.history.lock import HistoryLock; HistoryLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def test_second_holder_is_refused_with_the_holders_pid_and_kill_9_frees_it(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError) as err:
            HistoryLock(tmp_path).acquire()
        assert err.value.exit_code == EXIT_LOCKED == 75
        msg = str(err.value)
        assert f"pid {proc.pid}" in msg and "\n" not in msg
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with HistoryLock(tmp_path) as lock:  # the kernel dropped the dead holder's lock
        assert lock.path.exists()
    # released: can be taken again
    HistoryLock(tmp_path).acquire().release()


def test_lock_in_same_process_is_exclusive_too(tmp_path):
    with HistoryLock(tmp_path), pytest.raises(LockedError):
        HistoryLock(tmp_path).acquire()
