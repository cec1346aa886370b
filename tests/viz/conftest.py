"""One torch thread: the end-to-end tests train and embed in-process on a shared 2-core machine."""

from __future__ import annotations

import torch

torch.set_num_threads(1)
