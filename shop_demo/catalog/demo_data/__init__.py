"""A deterministic demo catalogue: drawn product pictures, shop texts and simulated shoppers.

Pure Python, Pillow and numpy (no Django), so it can be tested and run in worker
processes on its own; ``manage.py visrec_seed_demo`` writes it to the database.

* :mod:`.drawing`: product photos drawn from a :class:`~.drawing.Look`.
* :mod:`.catalogue`: names, prices, stock and descriptions of the products.
* :mod:`.shoppers`: shoppers with a hidden taste and the events they produce.
"""
from __future__ import annotations

from .catalogue import CATEGORY_NAMES, ProductSpec, generate_catalogue
from .drawing import CATEGORY_STYLES, COLOURS, PATTERNS, ImageJob, Look, render_product_image, write_image
from .shoppers import DEFAULT_END, Shopper, SimulatedEvent, generate_shoppers, simulate_events

__all__ = [
    "CATEGORY_NAMES", "CATEGORY_STYLES", "COLOURS", "DEFAULT_END", "PATTERNS", "ImageJob", "Look",
    "ProductSpec", "Shopper", "SimulatedEvent", "generate_catalogue", "generate_shoppers",
    "render_product_image", "simulate_events", "write_image",
]
