"""visrec_eval_embeddings: one table (versions + colour-histogram baseline), JSON and maps."""
from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from shop_demo.catalog.models import Product

from .test_finetuning import COLOURS, build_catalogue

pytestmark = pytest.mark.django_db


@pytest.mark.slow
def test_eval_command_reports_every_method_and_label(tmp_path, capsys):
    build_catalogue(per_shape=6)
    truth = {"products": [{"pk": p.pk, "colour": str(COLOURS[i % 6 % len(COLOURS)]), "pattern": "solid"}
                          for i, p in enumerate(Product.objects.order_by("pk"))]}
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(truth))
    call_command("visrec_eval_embeddings", "--ground-truth", str(path), "--output", str(tmp_path / "out"), "--k", "5")
    out = capsys.readouterr().out
    assert "24 products, k=5" in out
    assert "colour histogram (baseline)" in out and "efficientnet_lite0@imagenet-" in out
    assert "P@5 category" in out and "P@5 colour" in out and "P@5 category+colour" in out
    data = json.loads((tmp_path / "out" / "embeddings.json").read_text())
    by_method = {row["method"]: row for row in data["rows"]}
    # Drawn shapes: the CNN separates categories far better than colour histograms do.
    cnn = next(v for k, v in by_method.items() if k.startswith("efficientnet"))
    assert cnn["P@5 category"] > by_method["colour histogram (baseline)"]["P@5 category"]
    assert by_method["colour histogram (baseline)"]["P@5 colour"] > 0.5
    for png in data["maps"].values():
        assert (tmp_path / "out" / png.split("/")[-1]).stat().st_size > 10_000


def test_eval_command_errors(tmp_path):
    with pytest.raises(CommandError, match="visrec_index"):
        call_command("visrec_eval_embeddings", "--output", str(tmp_path))
    with pytest.raises(CommandError, match="not found"):
        call_command("visrec_eval_embeddings", "--ground-truth", str(tmp_path / "nope.json"))
