"""Simulated shoppers with a hidden taste, and the browsing history that taste produces.

Each shopper prefers two or three categories, two or three colours and some patterns.
Over a number of weeks ending at a fixed date (:data:`DEFAULT_END`, never "now", so that
the same seed always gives the same history) they visit the shop in sessions: a session
mostly browses one category, views products chosen by taste and popularity (with some
noise), adds a few to the cart and buys fewer, the purchases strongly following taste.
Products exist only from the time they were added, so products added in the last week
have few or no events (cold start).

Every shopper has an own random generator seeded by ``(seed, shopper)``; nothing here
imports Django.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

from .catalogue import PATTERN_WEIGHTS, ProductSpec
from .drawing import CATEGORY_STYLES, COLOURS

#: The end of the simulated history: events happen in the weeks before it.
DEFAULT_END = datetime(2026, 11, 1, tzinfo=timezone.utc)

VIEW, CART, PURCHASE = "view", "cart", "purchase"

_CATEGORIES = sorted(CATEGORY_STYLES)
_COLOURS = list(COLOURS)
_PATTERNS = list(PATTERN_WEIGHTS)
#: Relative traffic per hour of the day (UTC): quiet nights, a lunch bump, busy evenings.
_HOURLY = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.4, 0.8, 1.5, 2.2, 2.6, 2.8, 3.0,
                    3.4, 3.2, 2.8, 2.7, 2.8, 3.2, 3.8, 4.4, 4.6, 4.0, 3.0, 1.8])
_HOURLY = _HOURLY / _HOURLY.sum()


@dataclass(frozen=True)
class Taste:
    """A shopper's hidden preferences: a probability distribution over each attribute."""

    category: dict[str, float]
    colour: dict[str, float]
    pattern: dict[str, float]

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {"category": self.category, "colour": self.colour, "pattern": self.pattern}


@dataclass(frozen=True)
class Shopper:
    """A simulated shopper; ``shopper_id`` is what their pseudonym is made from."""

    index: int
    shopper_id: int
    taste: Taste
    sessions_per_week: float


@dataclass(frozen=True)
class SimulatedEvent:
    """One interaction of a shopper (by index) with a product (by catalogue index)."""

    shopper_index: int
    product_index: int
    event_type: str
    occurred_at: datetime


def _concentrated(names: Sequence[str], favourites: int, share: float, rng: np.random.Generator) -> dict[str, float]:
    """Weights summing to 1 with ``share`` of the mass on ``favourites`` random names."""
    weights = np.full(len(names), (1 - share) / len(names))
    chosen = rng.choice(len(names), size=favourites, replace=False)
    weights[chosen] += share * rng.dirichlet(np.full(favourites, 3.0))
    return {name: round(float(w), 6) for name, w in zip(names, weights)}


def make_shopper(index: int, seed: int) -> Shopper:
    """Shopper number ``index`` (from 0) of the population made with ``seed``."""
    rng = np.random.default_rng([seed, 0x5409, index])
    category = _concentrated(_CATEGORIES, int(rng.integers(2, 4)), 0.85, rng)
    colour = _concentrated(_COLOURS, int(rng.integers(2, 4)), 0.8, rng)
    raw = 0.85 * rng.dirichlet(np.full(len(_PATTERNS), 0.6)) + 0.15 / len(_PATTERNS)
    pattern = {name: round(float(w), 6) for name, w in zip(_PATTERNS, raw)}
    rate = float(np.clip(rng.lognormal(np.log(1.2), 0.7), 0.15, 8.0))
    return Shopper(index=index, shopper_id=index + 1, taste=Taste(category, colour, pattern),
                   sessions_per_week=round(rate, 4))


def generate_shoppers(count: int, seed: int) -> list[Shopper]:
    """``count`` shoppers for ``seed``."""
    return [make_shopper(i, seed) for i in range(count)]


class _Catalogue:
    """The catalogue as arrays, for fast sampling: one entry per product, in index order."""

    def __init__(self, products: Sequence[ProductSpec], window_s: float) -> None:
        self.category = np.array([_CATEGORIES.index(p.category) for p in products], dtype=np.int64)
        self.colour = np.array([_COLOURS.index(p.colour) for p in products], dtype=np.int64)
        self.pattern = np.array([_PATTERNS.index(p.pattern) for p in products], dtype=np.int64)
        self.exposure = np.array([p.popularity for p in products]) ** 0.7
        self.in_stock = np.array([p.stock > 0 for p in products])
        #: Seconds from the window's start when the product appeared (negative: before it).
        self.added_at = window_s - np.array([p.added_days_ago for p in products]) * 86400.0
        self.by_category = [np.flatnonzero(self.category == k) for k in range(len(_CATEGORIES))]


def _match(shopper: Shopper, cat: _Catalogue) -> np.ndarray:
    """How well each product fits the shopper's taste: ``(n_products,)`` float in (0, 1]."""
    taste = shopper.taste
    c = np.array([taste.category[n] for n in _CATEGORIES])
    o = np.array([taste.colour[n] for n in _COLOURS])
    p = np.array([taste.pattern[n] for n in _PATTERNS])
    return (c / c.max())[cat.category] * (o / o.max())[cat.colour] * (p / p.max())[cat.pattern]


def _sample(candidates: np.ndarray, weights: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    total = weights.sum()
    if k <= 0 or len(candidates) == 0 or total <= 0:
        return np.empty(0, dtype=np.int64)
    return rng.choice(candidates, size=k, p=weights / total)


def _session_start(window_s: float, rng: np.random.Generator) -> float:
    days = int(window_s // 86400)
    day = int(rng.integers(0, days))
    hour = int(rng.choice(24, p=_HOURLY))
    return day * 86400.0 + hour * 3600.0 + float(rng.uniform(0, 3600))


def simulate_shopper(shopper: Shopper, cat: _Catalogue, seed: int, window_s: float) -> list[tuple[float, int, str]]:
    """One shopper's events as ``(seconds from window start, product index, event type)``."""
    rng = np.random.default_rng([seed, 0xE7E7, shopper.index])
    match = _match(shopper, cat)
    taste_weight = match ** 1.5 * cat.exposure
    category_p = np.array([shopper.taste.category[n] for n in _CATEGORIES])
    category_p = category_p / category_p.sum()
    weeks = window_s / (7 * 86400)
    n_sessions = max(1, int(rng.poisson(shopper.sessions_per_week * weeks)))
    starts = sorted(_session_start(window_s, rng) for _ in range(n_sessions))
    events: list[tuple[float, int, str]] = []
    for start in starts:
        available = cat.added_at <= start
        focus = int(rng.choice(len(_CATEGORIES), p=category_p)) if rng.random() < 0.85 else int(
            rng.integers(0, len(_CATEGORIES)))
        n_views = int(min(rng.geometric(0.2), 25))
        in_focus, anywhere, noise = rng.multinomial(n_views, [0.7, 0.18, 0.12])
        pool = cat.by_category[focus]
        viewed = np.concatenate([
            _sample(pool, taste_weight[pool] * available[pool], in_focus, rng),
            _sample(np.arange(len(match)), taste_weight * available, anywhere, rng),
            _sample(np.arange(len(match)), cat.exposure * available, noise, rng),
        ]).astype(np.int64)
        rng.shuffle(viewed)
        t = start
        carted: list[int] = []
        for product in viewed.tolist():
            t += float(rng.exponential(40.0)) + 8.0
            events.append((t, product, VIEW))
            fit = float(match[product])
            if cat.in_stock[product] and product not in carted and rng.random() < 0.015 + 0.3 * fit ** 2:
                t += float(rng.uniform(5, 40))
                events.append((t, product, CART))
                carted.append(product)
        if carted:
            t += float(rng.uniform(60, 400))
            for product in carted:
                if rng.random() < 0.08 + 0.7 * float(match[product]) ** 2:
                    events.append((t, product, PURCHASE))
                    t += 1.0
    return [e for e in events if e[0] < window_s]


def simulate_events(products: Sequence[ProductSpec], shoppers: Sequence[Shopper], seed: int, weeks: int = 8,
                    end: datetime = DEFAULT_END) -> list[SimulatedEvent]:
    """The whole shop's history over ``weeks`` weeks before ``end``, sorted by time.

    Args:
        products: the catalogue, in index order.
        shoppers: the population.
        seed: the demo's seed; each shopper's history depends on it and the shopper only.
        weeks: length of the history.
        end: the (timezone-aware) end of the history; fixed so that runs are reproducible.
    """
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware")
    window_s = weeks * 7 * 86400.0
    cat = _Catalogue(products, window_s)
    start = end - timedelta(seconds=window_s)
    out: list[SimulatedEvent] = []
    for shopper in shoppers:
        for t, product, kind in simulate_shopper(shopper, cat, seed, window_s):
            out.append(SimulatedEvent(shopper.index, product, kind, start + timedelta(seconds=round(t, 3))))
    out.sort(key=lambda e: (e.occurred_at, e.shopper_index, e.product_index, e.event_type))
    return out
