"""factory_boy factories for the demo catalogue (the host models visrec is pointed at)."""
from __future__ import annotations

import factory
from django.core.files.base import ContentFile

from shop_demo.catalog.models import Category, Product, ProductImage


class CategoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Category {n}")
    slug = factory.Sequence(lambda n: f"category-{n}")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    name = factory.Sequence(lambda n: f"Product {n}")
    slug = factory.Sequence(lambda n: f"product-{n}")
    price = "19.99"
    stock = 5
    category = factory.SubFactory(CategoryFactory)
    description = "A product."


class ProductImageFactory(factory.django.DjangoModelFactory):
    """An image row with a real in-memory JPEG file (``image__color`` sets its colour)."""

    class Meta:
        model = ProductImage

    product = factory.SubFactory(ProductFactory)
    position = 0
    image = factory.django.ImageField(color="red", width=64, height=64, format="JPEG")

    @classmethod
    def with_bytes(cls, data: bytes, name: str = "upload.jpg", **kwargs) -> ProductImage:
        """An image row whose file holds exactly ``data`` (which may be a broken image)."""
        product = kwargs.pop("product", None) or ProductFactory()
        instance = ProductImage(product=product, **kwargs)
        instance.image.save(name, ContentFile(data), save=True)
        return instance
