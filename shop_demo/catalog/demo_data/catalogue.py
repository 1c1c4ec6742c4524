"""The demo catalogue as plain data: what each product is, what it is called, costs and says.

Each product is a function of ``(seed, index)`` alone (its own random generator), so a
catalogue of any size is reproducible and its products can be made in any order. The
hidden attributes (category, colour, pattern, style) are what the pictures are drawn from;
the shop sees them only through the name and the description, like a real shop would.

Nothing here imports Django.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .drawing import CATEGORY_STYLES, COLOURS, Look, accent_name

#: The shop's name for each category.
CATEGORY_NAMES: dict[str, str] = {
    "t-shirts": "T-Shirts",
    "sneakers": "Sneakers",
    "mugs": "Mugs",
    "handbags": "Handbags",
    "lamps": "Lamps",
    "chairs": "Chairs",
    "watches": "Watches",
    "backpacks": "Backpacks",
    "dresses": "Dresses",
    "sunglasses": "Sunglasses",
    "vases": "Vases",
    "cushions": "Cushions",
}

#: How each style of each category is named in a product name.
STYLE_NAMES: dict[str, dict[str, str]] = {
    "t-shirts": {"crew": "Crew T-Shirt", "v-neck": "V-Neck T-Shirt", "long-sleeve": "Long-Sleeve T-Shirt"},
    "sneakers": {"low-top": "Low-Top Sneakers", "high-top": "High-Top Sneakers", "runner": "Running Shoes"},
    "mugs": {"classic": "Mug", "tall": "Tall Latte Mug", "camp": "Enamel Camp Mug"},
    "handbags": {"tote": "Tote Bag", "satchel": "Satchel", "crossbody": "Crossbody Bag"},
    "lamps": {"drum": "Drum Shade Table Lamp", "cone": "Cone Shade Table Lamp", "dome": "Dome Table Lamp"},
    "chairs": {"dining": "Dining Chair", "armchair": "Armchair", "bar-stool": "Bar Stool"},
    "watches": {"round": "Round Watch", "square": "Square Watch", "chronograph": "Chronograph Watch"},
    "backpacks": {"classic": "Backpack", "rolltop": "Roll-Top Backpack", "mini": "Mini Backpack"},
    "dresses": {"a-line": "A-Line Dress", "sheath": "Sheath Dress", "maxi": "Maxi Dress"},
    "sunglasses": {"wayfarer": "Wayfarer Sunglasses", "round": "Round Sunglasses", "cat-eye": "Cat-Eye Sunglasses"},
    "vases": {"bottle": "Bottle Vase", "cylinder": "Cylinder Vase", "round": "Round Vase"},
    "cushions": {"square": "Square Cushion", "lumbar": "Lumbar Cushion", "round": "Round Cushion"},
}

#: The word a pattern adds to a product name ("" for solid colours).
PATTERN_NAMES: dict[str, str] = {
    "solid": "", "striped": "Striped", "dotted": "Polka-Dot", "checked": "Checked", "zigzag": "Zigzag",
}

#: Shelf prices per category, in the shop's currency: (lowest, highest).
PRICE_BANDS: dict[str, tuple[float, float]] = {
    "t-shirts": (12, 39), "sneakers": (45, 160), "mugs": (8, 26), "handbags": (39, 240),
    "lamps": (29, 180), "chairs": (59, 420), "watches": (49, 480), "backpacks": (29, 130),
    "dresses": (29, 160), "sunglasses": (15, 180), "vases": (14, 90), "cushions": (12, 55),
}

#: How often each pattern occurs (solid colours are the most common, as in real shops).
PATTERN_WEIGHTS: dict[str, float] = {"solid": 0.4, "striped": 0.17, "dotted": 0.15, "checked": 0.15, "zigzag": 0.13}

#: Share of products added in the last week (cold start), and out of stock.
NEW_PRODUCT_SHARE = 0.06
OUT_OF_STOCK_SHARE = 0.10
SECOND_IMAGE_SHARE = 0.20

_STYLE_SENTENCES: dict[str, dict[str, str]] = {
    "t-shirts": {
        "crew": "A classic crew neckline and short sleeves.",
        "v-neck": "A flattering V-neck with short sleeves.",
        "long-sleeve": "Long sleeves and a crew neckline for cooler days.",
    },
    "sneakers": {
        "low-top": "A low-top cut with a cushioned cupsole.",
        "high-top": "A high-top cut with an ankle patch and a rubber toe cap.",
        "runner": "A lightweight running shoe with a sculpted foam midsole.",
    },
    "mugs": {
        "classic": "A classic straight-sided mug with a generous handle.",
        "tall": "A tall latte mug for long drinks.",
        "camp": "A wide enamel camp mug with a rolled contrast rim.",
    },
    "handbags": {
        "tote": "A roomy open tote with two shoulder handles.",
        "satchel": "A structured satchel with a front flap, clasp and top handle.",
        "crossbody": "A compact crossbody bag with a zip top and long strap.",
    },
    "lamps": {
        "drum": "A drum shade on a rounded ceramic base.",
        "cone": "A tapered cone shade on a slim stem with a round foot.",
        "dome": "A lacquered dome shade on a slender stand.",
    },
    "chairs": {
        "dining": "An upholstered dining chair on a wooden frame.",
        "armchair": "A deep armchair with rolled arms and a plump seat cushion.",
        "bar-stool": "A counter-height bar stool with a padded round seat and footrest.",
    },
    "watches": {
        "round": "A round case with a clean three-hand dial.",
        "square": "A square case with a minimalist dial.",
        "chronograph": "A chronograph with three sub-dials and a tachymeter bezel.",
    },
    "backpacks": {
        "classic": "A classic zip-top backpack with a front pocket.",
        "rolltop": "A roll-top backpack with buckled straps.",
        "mini": "A compact mini backpack for the essentials.",
    },
    "dresses": {
        "a-line": "An A-line silhouette with thin straps and a flared skirt.",
        "sheath": "A fitted sheath dress with cap sleeves.",
        "maxi": "A floor-length maxi dress with a tiered skirt.",
    },
    "sunglasses": {
        "wayfarer": "Wayfarer frames with a bold brow line.",
        "round": "Round frames with a keyhole bridge.",
        "cat-eye": "Cat-eye frames with upswept corners.",
    },
    "vases": {
        "bottle": "A bottle-shaped vase with a slender neck.",
        "cylinder": "A straight cylinder vase.",
        "round": "A round, bellied vase with a short neck.",
    },
    "cushions": {
        "square": "A square scatter cushion with piped edges.",
        "lumbar": "A long lumbar cushion with piped edges.",
        "round": "A round pleated cushion with a covered button.",
    },
}

_MATERIAL_SENTENCES: dict[str, tuple[str, ...]] = {
    "t-shirts": ("Made from soft 100% cotton jersey.", "Organic cotton, pre-shrunk and machine washable.",
                 "A lightweight cotton blend with a relaxed fit."),
    "sneakers": ("Canvas upper with a vulcanised rubber sole.", "Smooth faux-leather upper with padded collar.",
                 "Breathable mesh upper and a grippy outsole."),
    "mugs": ("Glazed stoneware, dishwasher and microwave safe.", "Holds 350 ml.",
             "Fine porcelain with a glossy finish."),
    "handbags": ("Vegan leather with a cotton lining.", "Pebbled leather with gold-tone hardware.",
                 "Water-resistant coated canvas."),
    "lamps": ("Takes one E27 bulb (not included).", "Fabric shade with a 1.5 m braided cable.",
              "Inline switch and a weighted base."),
    "chairs": ("Solid beech frame, easy to assemble.", "Upholstered in a hard-wearing woven fabric.",
               "Foam-padded seat with a removable cover."),
    "watches": ("Quartz movement, water resistant to 50 m.", "Stainless steel case and mineral glass.",
                "Interchangeable strap with a pin buckle."),
    "backpacks": ("Fits a 15-inch laptop.", "Water-repellent recycled polyester.",
                  "Padded shoulder straps and a breathable back panel."),
    "dresses": ("Flowing viscose with a concealed back zip.", "Soft cotton poplin, fully lined.",
                "Stretch jersey that packs without creasing."),
    "sunglasses": ("UV400 polarised lenses.", "Hand-polished acetate frames with metal hinges.",
                   "Comes with a protective case and cleaning cloth."),
    "vases": ("Hand-glazed ceramic, watertight.", "Matte stoneware with a smooth finish.",
              "Stands 30 cm tall."),
    "cushions": ("Cotton cover with a feather-filled pad.", "Removable cover with a hidden zip.",
                 "Soft velvet-touch fabric."),
}

_PATTERN_PHRASES: dict[str, str] = {
    "solid": "in solid {colour}",
    "striped": "with {accent} stripes",
    "dotted": "with {accent} polka dots",
    "checked": "in a {colour} and {accent} check",
    "zigzag": "with a {accent} zigzag print",
}


@dataclass(frozen=True)
class ProductSpec:
    """One demo product: the shop's fields, the hidden look, and how the simulation sees it.

    ``added_days_ago`` counts back from the simulation's end date; ``popularity`` is a
    lognormal exposure weight (a few products are much more popular than the rest).
    """

    index: int
    slug: str
    name: str
    category: str
    style: str
    colour: str
    pattern: str
    price: Decimal
    stock: int
    description: str
    image_count: int
    added_days_ago: float
    popularity: float
    seed: tuple[int, int]

    @property
    def look(self) -> Look:
        return Look(self.category, self.style, self.colour, self.pattern)

    @property
    def image_names(self) -> list[str]:
        """Storage names of the product's pictures, main picture first."""
        return [f"products/{self.slug}.jpg"] + [f"products/{self.slug}-{k + 1}.jpg" for k in range(1, self.image_count)]


def slugify(text: str) -> str:
    """A URL slug made of lowercase ASCII letters, digits and hyphens."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def category_order(seed: int) -> list[str]:
    """The categories in the order products are dealt out to them (a permutation per seed)."""
    names = sorted(CATEGORY_STYLES)
    order = np.random.default_rng([seed, 0xCA7]).permutation(len(names))
    return [names[i] for i in order]


def _log_uniform(low: float, high: float, rng: np.random.Generator) -> float:
    """A log-uniform draw between ``low`` and ``high`` (cheap items are more common)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _price(category: str, rng: np.random.Generator) -> Decimal:
    low, high = PRICE_BANDS[category]
    value = _log_uniform(low, high, rng)
    cents = rng.choice(["0.99", "0.50", "0.00"], p=[0.6, 0.15, 0.25])
    return max(Decimal(int(value)) + Decimal(str(cents)), Decimal(str(low)))


def describe(category: str, style: str, colour: str, pattern: str, rng: np.random.Generator) -> str:
    """A shop description that mentions the product's colour, pattern and style."""
    noun = STYLE_NAMES[category][style].lower().replace("t-shirt", "T-shirt")
    phrase = _PATTERN_PHRASES[pattern].format(accent=accent_name(colour), colour=colour)
    article = "An" if colour[0] in "aeiou" else "A"
    materials = _MATERIAL_SENTENCES[category]
    material = materials[int(rng.integers(0, len(materials)))]
    parts = [f"{article} {colour} {noun} {phrase}.", _STYLE_SENTENCES[category][style], material]
    if pattern != "solid":
        parts.append(f"The {PATTERN_NAMES[pattern].lower()} pattern runs across the whole piece.")
    return " ".join(parts)


def product_spec(index: int, seed: int, categories: list[str] | None = None) -> ProductSpec:
    """The demo product number ``index`` (from 0) of the catalogue made with ``seed``."""
    order = categories or category_order(seed)
    category = order[index % len(order)]
    rng = np.random.default_rng([seed, 0xCA7A, index])
    style = str(rng.choice(CATEGORY_STYLES[category]))
    colour = str(rng.choice(list(COLOURS)))
    pattern = str(rng.choice(list(PATTERN_WEIGHTS), p=list(PATTERN_WEIGHTS.values())))
    name = " ".join(part for part in (colour.title(), PATTERN_NAMES[pattern], STYLE_NAMES[category][style]) if part)
    price = _price(category, rng)
    stock = 0 if rng.random() < OUT_OF_STOCK_SHARE else int(rng.gamma(2.0, 20.0)) + 1
    description = describe(category, style, colour, pattern, rng)
    image_count = 2 if rng.random() < SECOND_IMAGE_SHARE else 1
    age = rng.random()
    if age < NEW_PRODUCT_SHARE:
        added_days_ago = float(rng.uniform(0.2, 7.0))
    elif age < 0.2:
        added_days_ago = float(rng.uniform(7.0, 56.0))
    else:
        added_days_ago = float(rng.uniform(56.0, 400.0))
    popularity = float(rng.lognormal(0.0, 1.1))
    return ProductSpec(
        index=index, slug=f"{slugify(name)}-{index + 1}", name=name, category=category, style=style,
        colour=colour, pattern=pattern, price=price, stock=stock, description=description,
        image_count=image_count, added_days_ago=round(added_days_ago, 4), popularity=round(popularity, 6),
        seed=(seed, index),
    )


def generate_catalogue(count: int, seed: int) -> list[ProductSpec]:
    """``count`` demo products for ``seed``; categories are dealt in turn so all appear early."""
    order = category_order(seed)
    return [product_spec(i, seed, order) for i in range(count)]

