"""A shop whose items and pictures have UUID keys and names of their own."""
from __future__ import annotations

import uuid

from django.db import models


class Item(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=100)
    kind = models.CharField(max_length=30, blank=True)

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/items/{self.pk}/"


class Picture(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="pictures")
    file = models.ImageField(upload_to="pictures/")
