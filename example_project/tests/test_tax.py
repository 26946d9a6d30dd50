from shop.pricing.tax import with_tax


def test_with_tax():
    assert with_tax(1000) == 1200


def test_tax_rounds_down():
    assert with_tax(1) == 1
