"""hs2p's tile stream on one slide, one reader configuration (run by ``bench_read_limit.py`` with
the interpreter of hs2p's own environment): tiles/s over its first ``n`` tiles, 2 threads.

    python _hs2p_read_worker.py SLIDE N BACKEND {plain,supertiles}
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit
from bench_extract import hs2p_read


def main() -> None:
    slide, n, backend, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    emit(hs2p_read(slide, n, backend, supertiles=mode == "supertiles"))


if __name__ == "__main__":
    main()
