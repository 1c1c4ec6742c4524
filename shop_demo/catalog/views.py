"""The demo storefront: home, category and product pages."""
from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render

import visrec
from visrec.imaging import ImageRejected
from visrec.services.serving import presentation
from visrec.services.serving.photo_search import search_by_image
from visrec.services.serving.similar import NotEmbedded

from .models import Category, Product, ProductImage

PAGE_SIZE = 24


def _with_first_image(queryset):
    return queryset.select_related("category").prefetch_related(
        Prefetch("images", queryset=ProductImage.objects.order_by("position", "pk"))
    )


def home(request):
    products = _with_first_image(Product.objects.filter(stock__gt=0).order_by("-created_at", "pk"))[:12]
    categories = Category.objects.all()
    return render(request, "catalog/home.html", {"products": products, "categories": categories})


def category_detail(request, slug: str):
    category = get_object_or_404(Category, slug=slug)
    products = _with_first_image(category.products.order_by("name", "pk"))
    page = Paginator(products, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "catalog/category.html", {"category": category, "page": page})


def product_detail(request, slug: str):
    product = get_object_or_404(_with_first_image(Product.objects.all()), slug=slug)
    visrec.track(request, "view", product)
    return render(request, "catalog/product.html", {"product": product})


def headless_product(request, slug: str):
    """The product page as a shop whose pages are not Django templates would build it: visrec's
    rows are the web components of ``visrec-widgets.js``, filled from the REST API in the browser."""
    product = get_object_or_404(_with_first_image(Product.objects.all()), slug=slug)
    visrec.track(request, "view", product)
    return render(request, "catalog/headless_product.html", {"product": product})


class PhotoSearchForm(forms.Form):
    image = forms.ImageField(label="A photo of something you like")


def photo_search(request):
    """Search by photo, as a shop would wire visrec's service into its own page: the shopper's
    photo shown back, and a category only when visrec is sure of one."""
    form = PhotoSearchForm(request.POST or None, request.FILES or None)
    results, error, category, note, uploaded = [], "", None, "", ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data["image"].read()
        try:
            found = search_by_image(data, k=12, with_category=True)
            results = presentation.product_cards(found.ranked)
            category = Category.objects.filter(pk=found.predicted_category).first()
            note = found.category_note
            uploaded = thumbnail_data_url(data)
        except ImageRejected as exc:
            error = f"We could not read that picture: {exc.reason}."
        except NotEmbedded:
            error = "The catalogue is still being indexed; try again in a minute."
    status = 400 if request.method == "POST" and (error or not form.is_valid()) else 200
    return render(request, "catalog/photo_search.html",
                  {"form": form, "results": results, "error": error, "category": category, "note": note,
                   "uploaded": uploaded}, status=status)


def thumbnail_data_url(data: bytes, size: int = 256) -> str:
    """The uploaded photo as a small JPEG ``data:`` URL, to show it back (never stored)."""
    import base64
    import io

    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
