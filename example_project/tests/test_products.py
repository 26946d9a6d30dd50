from shop.catalog import load_products


def test_catalog_has_bread():
    products = load_products()
    assert products["bread"].price_cents == 250


def test_every_price_is_positive():
    assert all(p.price_cents > 0 for p in load_products().values())
