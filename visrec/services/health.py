"""What a process sees of visrec's database: pgvector version and embedding counts."""
from __future__ import annotations

from django.db import connection

from ..models import ImageEmbedding, ProductEmbedding


def database_health() -> dict:
    """Returns the pgvector version and how many image/product embeddings are stored."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
    return {
        "pgvector": row[0] if row else None,
        "image_embeddings": ImageEmbedding.objects.count(),
        "product_embeddings": ProductEmbedding.objects.count(),
    }
