"""The one way the terminal views write numbers (p9cli/ui/numbers.py)."""

from p9cli.ui.numbers import fmt_age, fmt_price, fmt_qty, fmt_signed, num, price_decimals


def test_prices_follow_the_tick_else_the_magnitude():
    assert fmt_price(67123.456) == "67,123.46" and fmt_price(1.23456) == "1.2346"
    assert fmt_price(67123.4, price_decimals(67123.4, 0.1)) == "67,123.4"
    assert fmt_price(0.000123456) == "0.000123"
    assert fmt_price(None) == fmt_price(float("nan")) == fmt_price(True) == "–"
    assert num("1") is None and num(2) == 2.0


def test_quantities_signed_and_ages():
    assert (fmt_qty(0.5), fmt_qty(250.0), fmt_qty(12_500), fmt_qty(2_500_000)) == ("0.5000", "250.0", "12.5k", "2.50M")
    assert fmt_signed(-1.234, 2, "%") == "-1.23%" and fmt_signed(None) == "–"
    assert [fmt_age(ms) for ms in (4_200, 42_000, 300_000, 10_800_000, None)] == [
        "4.2 s", "42 s", "5 min", "3.0 h", "never"]  # fmt: skip
    assert [fmt_age(ms, compact=True) for ms in (4_200, 42_000, 300_000, 10_800_000, None)] == [
        "4.2s", "42s", "5m", "3.0h", "–"]  # fmt: skip
