"""Run ``slidestream ...`` as the executable does, and note when the first batch of features exists.

Used by ``bench_job_startup.py`` only. ``SS_BENCH_OUT`` names a JSON file written at exit with:
``first_batch_t`` (``time.time()`` when the encoder returned its first batch), the process's
peak RSS (``VmHWM``) at that moment and at exit, and the RSS at the first batch. Nothing is
imported before the CLI: a finder hooks ``slidestream.extraction.runner`` when the CLI itself
imports it, so the import cost measured is the command's own.
"""

from __future__ import annotations

import atexit
import importlib.abc
import importlib.machinery
import json
import os
import sys
import time

OUT = os.environ["SS_BENCH_OUT"]
RECORD: dict[str, float | None] = {"first_batch_t": None}


def _status(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _wrap(module: object) -> None:
    original = module._embedded  # type: ignore[attr-defined]

    def timed(*args, **kwargs):
        for item in original(*args, **kwargs):
            if RECORD["first_batch_t"] is None:
                RECORD["first_batch_t"] = time.time()
                RECORD["rss_first_batch_mb"] = _status("VmRSS")
                RECORD["hwm_first_batch_mb"] = _status("VmHWM")
            yield item

    module._embedded = timed  # type: ignore[attr-defined]


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "slidestream.extraction.runner":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _wrap(module)

        loader.exec_module = exec_module
        return spec


@atexit.register
def _write() -> None:
    RECORD["hwm_exit_mb"] = _status("VmHWM")
    RECORD["modules"] = len(sys.modules)
    RECORD["torchvision"] = "torchvision" in sys.modules
    RECORD["timm"] = "timm" in sys.modules
    RECORD["torch._dynamo"] = "torch._dynamo" in sys.modules
    with open(OUT, "w") as fh:
        json.dump(RECORD, fh)


sys.meta_path.insert(0, _Hook())
sys.argv[0] = "slidestream"
from slidestream.cli import main  # noqa: E402

main()
