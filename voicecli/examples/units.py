"""A unit converter: an example of a `python = "module:function"` tool."""

from __future__ import annotations

# factor to the base unit of each kind (metre, kilogram, litre, second)
_FACTORS = {
    "length": {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "yd": 0.9144,
               "mi": 1609.344},
    "mass": {"g": 0.001, "kg": 1.0, "t": 1000.0, "oz": 0.028349523125, "lb": 0.45359237},
    "volume": {"ml": 0.001, "l": 1.0, "gal": 3.785411784, "floz": 0.0295735295625},
    "time": {"s": 1.0, "min": 60.0, "h": 3600.0, "day": 86400.0},
}
_TEMPERATURES = ("c", "f", "k")
UNITS = sorted(u for table in _FACTORS.values() for u in table) + list(_TEMPERATURES)


def convert(value: float, from_unit: str, to_unit: str) -> dict:
    """`value` in `from_unit` expressed in `to_unit`; a ValueError the model can read otherwise."""
    src, dst = from_unit.lower(), to_unit.lower()
    if src in _TEMPERATURES and dst in _TEMPERATURES:
        result = _from_kelvin(_to_kelvin(value, src), dst)
    else:
        kind = next((k for k, table in _FACTORS.items() if src in table), None)
        if kind is None or dst not in _FACTORS[kind]:
            raise ValueError(f"cannot convert {from_unit} to {to_unit}; known units: {', '.join(UNITS)}")
        result = value * _FACTORS[kind][src] / _FACTORS[kind][dst]
    return {"value": round(result, 6), "unit": to_unit}


def _to_kelvin(value: float, unit: str) -> float:
    return {"c": value + 273.15, "f": (value - 32) * 5 / 9 + 273.15, "k": value}[unit]


def _from_kelvin(value: float, unit: str) -> float:
    return {"c": value - 273.15, "f": (value - 273.15) * 9 / 5 + 32, "k": value}[unit]
