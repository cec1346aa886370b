# ruff: noqa
"""Verbatim copy of STAMP's feature-bag reader, for tests only: ``BagDataset``, ``CoordsInfo``,
``get_coords``, ``_to_fixed_size_bag`` and ``get_stride`` from KatherLab/STAMP
``src/stamp/modeling/data.py`` at commit c54ce06739622c127a83eccb35a7082e504b9aef (STAMP 2.5.0;
MIT License, Copyright (c) 2023 Omar El Nahhas; data.py: Copyright (C) 2022-2025 Marko van
Treeck, Minh Duc Nguyen). The five definitions below are byte-identical to upstream (checked
with ``ast`` source segments against that commit), and so are the type aliases from the top of
``data.py`` and ``stamp/types.py`` they use. What is not copied: the imports (only those these
definitions need), ``stamp.__version__`` (the installed version, set to the 2.5.0 of that
commit), and STAMP's package-wide ``beartype_this_package`` hook (type checks that only warn).
Copied rather than installed because STAMP needs Python >= 3.13 (``requires-python =
">=3.13,<3.14"``), which neither Debian 12 nor PyPI provides offline here (``uv python install``
downloads from GitHub), and PyPI's ``stamp`` 2.1.3 is another project that does not build.
"""

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from types import SimpleNamespace
from io import BytesIO
from typing import IO, BinaryIO, NewType, TypeAlias, Union, cast

import h5py
import numpy as np
import torch
from packaging.version import Version
from torch import Tensor
from torch.utils.data import Dataset

# The installed STAMP's version: get_coords refuses files stamped with a newer one.
stamp = SimpleNamespace(__version__="2.5.0")

Microns = NewType("Microns", float)
TilePixels = NewType("TilePixels", int)
SlideMPP = NewType("SlideMPP", float)
FeaturePath = NewType("FeaturePath", Path)
BagSize: TypeAlias = int
_logger = logging.getLogger("stamp")
_Bag: TypeAlias = Tensor
_EncodedTarget: TypeAlias = (
    Tensor | dict[str, Tensor]
)  # Union of encoded targets or multi-target dict
_BinaryIOLike: TypeAlias = Union[
    BinaryIO, IO[bytes], BytesIO
]  # includes io.BytesIO for runtime checks
"""The ground truth, encoded numerically
- classification: one-hot float [C]
- regression: float [1]
- multi-target: dict[target_name -> one-hot/regression value]
"""
_Coordinates: TypeAlias = Tensor


@dataclass
class BagDataset(Dataset[tuple[_Bag, _Coordinates, BagSize, _EncodedTarget]]):
    """A dataset of bags of instances."""

    _: KW_ONLY
    bags: Sequence[Iterable[FeaturePath | _BinaryIOLike]]
    """The `.h5` files containing the bags.

    Each bag consists of the features taken from one or multiple h5 files.
    Each of the h5 files needs to have a dataset called `feats` of shape N x F,
    where N is the number of instances and F the number of features per instance.
    """

    bag_size: BagSize | None = None
    """The number of instances in each bag.

    For bags containing more instances,
    a random sample of `bag_size` instances will be drawn.
    Smaller bags are padded with zeros.
    If `bag_size` is None, all the samples will be used.
    """

    ground_truths: Tensor | list[dict[str, Tensor]]

    # ground_truths: Bool[Tensor, "index category_is_hot"]
    # """The ground truth for each bag, one-hot encoded."""

    transform: Callable[[Tensor], Tensor] | None
    deterministic: bool = False

    def __post_init__(self) -> None:
        if len(self.bags) != len(self.ground_truths):
            raise ValueError(
                "the number of ground truths has to match the number of bags"
            )
        # Initialise per-worker HDF5 handle cache here so __getitem__ avoids
        # a hasattr() call on every tile read.
        self._h5_handle_cache: OrderedDict[FeaturePath | _BinaryIOLike, h5py.File] = (
            OrderedDict()
        )

    def __getstate__(self) -> dict:
        # h5py file handles cannot be pickled (required when DataLoader uses
        # spawn-based multiprocessing). Drop the cache; each worker reopens
        # files lazily on the first __getitem__ access.
        state = self.__dict__.copy()
        state["_h5_handle_cache"] = OrderedDict()
        return state

    def __len__(self) -> int:
        return len(self.bags)

    def __getitem__(
        self, index: int
    ) -> tuple[_Bag, _Coordinates, BagSize, _EncodedTarget]:
        # Collect all the features
        feats = []
        coords_um = []
        for bag_file in self.bags[index]:
            if bag_file not in self._h5_handle_cache:
                # Limit open handles to avoid reaching OS ulimits
                if len(self._h5_handle_cache) >= 128:
                    _, h = self._h5_handle_cache.popitem(last=False)
                    h.close()

                try:
                    # libver='latest' and swmr=True can provide better performance
                    # on some network/HPC filesystems
                    self._h5_handle_cache[bag_file] = h5py.File(
                        bag_file, "r", swmr=True, libver="latest"
                    )
                except Exception:
                    # Fallback for older HDF5 files or unconventional storage
                    self._h5_handle_cache[bag_file] = h5py.File(bag_file, "r")
            else:
                # Move recently accessed file to end (mark as recently used)
                self._h5_handle_cache.move_to_end(bag_file)

            h5 = self._h5_handle_cache[bag_file]

            if "feats" in h5:
                feats_obj = h5["feats"]
                if not isinstance(feats_obj, h5py.Dataset):
                    raise RuntimeError(
                        f"expected 'feats' to be an HDF5 dataset but got {type(feats_obj)}"
                    )
                arr = feats_obj[
                    ()
                ]  # uses [()] instead of [:] for clarity, both read entire dataset
            else:
                embeddings_obj = h5["patch_embeddings"]
                if not isinstance(embeddings_obj, h5py.Dataset):
                    raise RuntimeError(
                        f"expected 'patch_embeddings' to be an HDF5 dataset but got {type(embeddings_obj)}"
                    )
                arr = embeddings_obj[()]  # your Kronos files

            feats.append(torch.from_numpy(arr))
            coords_um.append(torch.from_numpy(get_coords(h5).coords_um))

        feats = torch.concat(feats).float()
        coords_um = torch.concat(coords_um).float()

        if self.transform is not None:
            feats = self.transform(feats)

        # Sample a subset, if required
        if self.bag_size is not None:
            return (
                *_to_fixed_size_bag(
                    feats,
                    coords=coords_um,
                    bag_size=self.bag_size,
                    deterministic=self.deterministic,
                ),
                self.ground_truths[index],
            )
        else:
            return (
                feats,
                coords_um,
                len(feats),
                self.ground_truths[index],
            )


@dataclass
class CoordsInfo:
    coords_um: np.ndarray
    tile_size_um: Microns
    tile_size_px: TilePixels | None = None

    @property
    def mpp(self) -> SlideMPP:
        if not self.tile_size_px:
            raise RuntimeError(
                "tile size in pixels is not available. Please reextract them using `stamp preprocess`."
            )
        return SlideMPP(self.tile_size_um / self.tile_size_px)


def get_coords(feature_h5: h5py.File) -> CoordsInfo:
    # NEW: handle missing coords - multiplex data bypass: no coords found; generated fake coords
    if "coords" not in feature_h5:
        feats_obj = feature_h5["patch_embeddings"]

        if not isinstance(feats_obj, h5py.Dataset):
            raise RuntimeError(
                f"{feature_h5.filename}: expected 'feats' to be an HDF5 dataset but got {type(feats_obj)}"
            )

        n = feats_obj.shape[0]

        coords_um = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
        tile_size_um = Microns(0.0)
        tile_size_px = TilePixels(0)

        return CoordsInfo(coords_um, tile_size_um, tile_size_px)
    coords_obj = feature_h5["coords"]
    if not isinstance(coords_obj, h5py.Dataset):
        raise RuntimeError(
            f"{feature_h5.filename}: expected 'coords' to be an HDF5 dataset but got {type(coords_obj)}"
        )
    coords: np.ndarray = coords_obj[:]
    tile_size_um: Microns | None = None
    tile_size_px: TilePixels | None = None
    coords_um: np.ndarray | None = None
    if (tile_size := feature_h5.attrs.get("tile_size", None)) and feature_h5.attrs.get(
        "unit", None
    ) == "um":
        # STAMP v2 format
        tile_size_um = Microns(float(tile_size))
        coords_um = coords
    elif tile_size := feature_h5.attrs.get("tile_size_um", None):
        # Newer STAMP format
        tile_size_um = Microns(float(tile_size))
        coords_um = coords
    elif (
        round(
            feature_h5.attrs.get(
                "tile_size", get_stride(torch.from_numpy(coords).float())
            )
        )
        == 224
    ):
        # Historic STAMP format
        _logger.debug(
            f"{feature_h5.filename}: tile stride is roughly 224, assuming coordinates have unit 256um/224px (historic STAMP format)"
        )
        tile_size_um = Microns(256.0)
        tile_size_px = TilePixels(224)
        coords_um = coords / 224 * 256

    if (version_str := feature_h5.attrs.get("stamp_version")) and (
        extraction_version := Version(version_str)
    ) > Version(stamp.__version__):
        raise RuntimeError(
            f"features were extracted with a newer version of stamp, please update your stamp to at least version {extraction_version}."
        )

    if not tile_size_px and "tile_size_px" in feature_h5.attrs:
        tile_size_px = TilePixels(int(feature_h5.attrs["tile_size_px"]))  # pyright: ignore[reportArgumentType]

    if not tile_size_um or coords_um is None:
        raise RuntimeError(
            "unable to infer coordinates from feature file. Please reextract them using `stamp preprocess`."
        )

    return CoordsInfo(coords_um, tile_size_um, tile_size_px)


def _to_fixed_size_bag(
    bag: _Bag, coords: _Coordinates, bag_size: BagSize, deterministic: bool = False
) -> tuple[_Bag, _Coordinates, BagSize]:
    """Samples a fixed-size bag of tiles from an arbitrary one.

    If the original bag did not have enough tiles,
    the bag is zero-padded to the right.
    """
    # get up to bag_size elements
    n_tiles, _dim_feats = bag.shape
    if n_tiles <= bag_size:
        # take all and pad later
        bag_idxs = torch.arange(n_tiles, device=bag.device)
    else:
        if deterministic:
            # equidistant indices across the bag
            idxs = torch.linspace(0, n_tiles - 1, steps=bag_size, device=bag.device)
            bag_idxs = idxs.round().long()
        else:
            bag_idxs = torch.randperm(n_tiles, device=bag.device)[:bag_size]

    bag_samples = bag[bag_idxs]
    coord_samples = coords[bag_idxs]

    # zero-pad if we don't have enough samples
    if bag_samples.shape[0] < bag_size:
        zero_padded_bag = torch.cat(
            (
                bag_samples,
                torch.zeros(
                    bag_size - bag_samples.shape[0],
                    bag_samples.shape[1],
                    device=bag.device,
                    dtype=bag.dtype,
                ),
            )
        )
        zero_padded_coord = torch.cat(
            (
                coord_samples,
                torch.zeros(
                    bag_size - coord_samples.shape[0],
                    coord_samples.shape[1],
                    device=coords.device,
                    dtype=coords.dtype,
                ),
            )
        )
    else:
        zero_padded_bag = bag_samples
        zero_padded_coord = coord_samples
    return zero_padded_bag, zero_padded_coord, min(bag_size, len(bag))


def get_stride(coords: Tensor) -> float:
    """Gets the minimum step width between any two coordintes."""
    xs: Tensor = coords[:, 0].unique(sorted=True)
    ys: Tensor = coords[:, 1].unique(sorted=True)
    stride = cast(
        float,
        min(
            (xs[1:] - xs[:-1]).min().item(),
            (ys[1:] - ys[:-1]).min().item(),
        ),
    )
    return stride


