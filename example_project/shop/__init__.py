"""A tiny shop: a catalog, prices with discounts and tax, and a cart."""
