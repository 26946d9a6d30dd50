"""Products, loaded from a JSON file shipped next to this module."""

import json
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = "data/products.json"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int


def load_products() -> dict[str, Product]:
    raw = json.loads((Path(__file__).parent / DATA_FILE).read_text())
    return {item["sku"]: Product(**item) for item in raw}
