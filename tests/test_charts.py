"""Inline SVG charts: well-formed, labelled for screen readers, escaped, and calm about odd values."""
from __future__ import annotations

import xml.etree.ElementTree as ET

from visrec import charts

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg" and root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{NS}title").get("id") == title_id and root.find(f"{NS}desc").get("id") == desc_id
    return root


def test_bar_chart_draws_each_bar_with_its_whisker_and_says_the_numbers():
    svg = charts.bar_chart("Recall@20 of each list", [
        charts.Bar("model", 0.214, 0.19, 0.24), charts.Bar("blend", 0.23, highlight=True),
        charts.Bar("served", float("nan"))], y_label="Recall@20")
    root = parse(svg)
    assert root.find(f"{NS}title").text == "Recall@20 of each list"
    desc = root.find(f"{NS}desc").text
    assert desc == "Recall@20 — model: 0.214 (95% interval 0.190 to 0.240); blend: 0.230."
    bars = [g for g in root.iter(f"{NS}g") if g.get("class") == "visrec-bar"]
    assert len(bars) == 2  # the NaN bar is left out
    assert len([p for p in root.iter(f"{NS}path") if p.get("class") == "visrec-whisker"]) == 1
    assert [b.find(f"{NS}title").text for b in bars] == ["model: 0.214 (95% interval 0.190 to 0.240)", "blend: 0.230"]


def test_line_chart_marks_the_chosen_point_and_the_target():
    root = parse(charts.line_chart("HNSW recall@10 by ef_search", [(40, 0.95), (80, 0.99), (160, 1.0)],
                                   x_label="ef_search", y_label="recall@10", target=0.98, highlight_x=80, log_x=True))
    points = [g.find(f"{NS}title").text for g in root.iter(f"{NS}g") if g.get("class") == "visrec-point"]
    assert points == ["ef_search 40: recall@10 0.950", "ef_search 80: recall@10 0.990 (chosen)",
                      "ef_search 160: recall@10 1.000"]
    assert any(g.get("class") == "visrec-target" for g in root.iter(f"{NS}g"))
    assert "target 0.980" in root.find(f"{NS}desc").text


def test_interval_chart_says_which_side_of_zero():
    assert "includes zero" in parse(charts.interval_chart("d", 0.016, -0.004, 0.036)).find(f"{NS}desc").text
    text = parse(charts.interval_chart("d", -0.05, -0.08, -0.02)).find(f"{NS}desc").text
    assert text == "difference \u22120.050, 95% interval \u22120.080 to \u22120.020: the whole interval is below zero (worse)."


def test_text_is_escaped_and_nothing_to_draw_is_said():
    root = parse(charts.bar_chart('<script>alert("x")</script>', [charts.Bar("a&b", 1.0)]))
    assert root.find(f"{NS}title").text == '<script>alert("x")</script>'  # as text, not markup
    assert not list(root.iter("script")) and not list(root.iter(f"{NS}script"))
    for svg in (charts.bar_chart("t", []), charts.line_chart("t", [(1, None)]),
                charts.interval_chart("t", None, 0, 1), charts.line_chart("t", [(0, 1.0)], log_x=True)):
        assert parse(svg).find(f"{NS}desc").text.startswith("no ")


def test_a_single_point_and_equal_values_still_draw():
    parse(charts.line_chart("t", [(40, 1.0)], target=0.98, highlight_x=40))
    parse(charts.bar_chart("t", [charts.Bar("zero", 0.0), charts.Bar("neg", -0.5)]))
    parse(charts.interval_chart("t", 0.0, 0.0, 0.0))
