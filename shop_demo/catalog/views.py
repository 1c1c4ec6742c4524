"""The demo storefront: home, category and product pages."""
from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, render

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
    return render(request, "catalog/product.html", {"product": product})
