"""Server-rendered SVG bar charts (no script, no chart library): pure functions from numbers
to markup, every label escaped."""

from __future__ import annotations

from markupsafe import Markup, escape


def grouped_bars(groups: list[tuple[str, list[tuple[str, float, str]]]], title: str, unit: str,
                 width: int = 640, bar_height: int = 14) -> Markup:
    """Horizontal bars: each group (a label) holds bars (label, value, css class). ``title`` is
    the chart's accessible name; ``unit`` follows each value."""
    most = max([value for _label, bars in groups for _b, value, _c in bars] + [0.0]) or 1.0
    label_w, value_w = 150, 90
    span = width - label_w - value_w
    y, parts = 0, []
    for label, bars in groups:
        parts.append(f'<text x="0" y="{y + bar_height}">{escape(label)}</text>')
        for bar_label, value, css in bars:
            length = max(0.0, value) / most * span
            parts.append(f'<rect class="{escape(css)}" x="{label_w}" y="{y + 2}" width="{length:.1f}" height="{bar_height}">'
                         f'<title>{escape(bar_label)}: {value:.2f} {escape(unit)}</title></rect>')
            parts.append(f'<text x="{label_w + length + 4:.1f}" y="{y + bar_height}">{value:.1f}</text>')
            y += bar_height + 4
        y += 8
    return Markup(f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{y}" viewBox="0 0 {width} {y}" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(parts)}</svg>')
