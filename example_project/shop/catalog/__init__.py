from .products import Product, load_products

__all__ = ["Product", "load_products"]
