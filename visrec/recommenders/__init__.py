"""Recommender models over dense user/item indices: pure numpy/scipy/torch, no ORM.

``MODELS`` maps the name written into every saved file to its class; :func:`load_model`
reads a file written by ``Recommender.save`` back into the right class.
"""
from __future__ import annotations

import os
from typing import BinaryIO

from visrec.recommenders.base import BATCH_CELLS, Interactions, Recommender, top_n
from visrec.recommenders.bpr import BPRRecommender
from visrec.recommenders.dp_itembpr import DPItemBPRRecommender
from visrec.recommenders.itemknn import ItemKNNRecommender
from visrec.recommenders.popularity import PopularityRecommender
from visrec.recommenders.vbpr import VBPRRecommender

MODELS: dict[str, type[Recommender]] = {
    PopularityRecommender.name: PopularityRecommender,
    ItemKNNRecommender.name: ItemKNNRecommender,
    BPRRecommender.name: BPRRecommender,
    VBPRRecommender.name: VBPRRecommender,
    DPItemBPRRecommender.name: DPItemBPRRecommender,
}


def load_model(path_or_fileobj: str | os.PathLike[str] | BinaryIO) -> Recommender:
    """Loads a saved model of whichever class the file names (``np.load(allow_pickle=False)``)."""
    return Recommender.load(path_or_fileobj)


__all__ = [
    "BATCH_CELLS",
    "MODELS",
    "BPRRecommender",
    "DPItemBPRRecommender",
    "Interactions",
    "ItemKNNRecommender",
    "PopularityRecommender",
    "Recommender",
    "VBPRRecommender",
    "load_model",
    "top_n",
]
