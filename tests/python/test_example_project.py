"""The walkthrough of example_project/README.md, step by step."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "example_project"


@pytest.fixture
def shop(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copytree(
        EXAMPLE,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns(".dryci", "__pycache__"),
    )
    return pytester


def run(shop: pytest.Pytester) -> pytest.RunResult:
    return shop.runpytest_subprocess("--dryci", "-p", "no:cacheprovider", "-v")


def test_readme_walkthrough(shop):
    run(shop).assert_outcomes(passed=13)
    run(shop).assert_outcomes(skipped=13)

    with open(shop.path / "shop/pricing/tax.py", "a") as tax:
        tax.write("# edited\n")
    result = run(shop)
    result.assert_outcomes(passed=6, skipped=7)
    ran = {line.split("::")[0] for line in result.outlines if "PASSED" in line}
    assert ran == {"tests/test_tax.py", "tests/test_cart.py", "tests/test_receipt.py"}

    with open(shop.path / "shop/catalog/data/products.json", "a") as data:
        data.write(" \n")
    result = run(shop)
    result.assert_outcomes(passed=11, skipped=2)
    skipped = {line.split("::")[0] for line in result.outlines if "SKIPPED" in line}
    assert skipped == {"tests/test_tax.py"}

    # The expected text no rule names: observed when the test read it.
    expected = shop.path / "tests/expected/test_receipt_matches_the_expected_text.txt"
    expected.write_text("2 x Bread\n")
    result = run(shop)
    result.assert_outcomes(failed=1, skipped=12)
    failed = {
        line.split("::")[0]
        for line in result.outlines
        if line.startswith("tests/") and "FAILED" in line
    }
    assert failed == {"tests/test_receipt.py"}
