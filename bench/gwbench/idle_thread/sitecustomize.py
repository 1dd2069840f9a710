"""Imported by Python at start-up when this folder is on ``PYTHONPATH`` (the production mix's
``gw-idle-thread`` case): every process forked from then on, the gateway's workers, starts one
thread that waits forever and does nothing. Against the Zipf row it shows what a second
thread's mere existence costs a worker (tracing's export thread is one)."""

from __future__ import annotations

import os
import threading


def idle_thread() -> None:
    threading.Thread(target=threading.Event().wait, name="idle", daemon=True).start()


os.register_at_fork(after_in_child=idle_thread)
