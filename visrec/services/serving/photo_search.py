"""Search by photo: an uploaded image, embedded like the catalogue, against the product vectors.

The image arrives as bytes (an upload); visrec never fetches an image from a URL given by
a client, so it cannot be turned into a server-side request forgery.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...conf import visrec_settings
from ...imaging import PreprocessConfig, decode_image, preprocess_image
from ..catalogue import products
from ..catalogue.embedders import active_embedder_version, load_embedder
from ..catalogue.extraction import preprocess_config
from ..catalogue.intelligence import category_vote
from ..db.index_calibration import nearest_similarity
from .similar import NotEmbedded, SimilarFilters, search_by_vector


@dataclass
class PhotoSearchResult:
    ranked: list[tuple[int, float]]
    predicted_category: object | None
    category_confidence: float | None
    model_version: str
    category_note: str = ""  # why no category is predicted, when one was asked for


def predict_category(ranked: list[tuple[int, float]]) -> tuple[object | None, float | None]:
    """The category most of the nearest products share (similarity-weighted vote,
    :func:`~visrec.services.catalogue.intelligence.category_vote`), and its share."""
    if not visrec_settings.CATEGORY_FIELD or not ranked:
        return None, None
    vote = category_vote(ranked, products.primary_categories(p for p, _ in ranked))
    return vote.category, None if vote.confidence is None else round(vote.confidence, 4)


def looks_like_the_catalogue(ranked: list[tuple[int, float]], version) -> bool:
    """Whether the photo's nearest product is at least as close as the catalogue's own products
    are to theirs (its 5th percentile): a vote among neighbours that all look unlike the photo
    (a drawing, a screenshot) says nothing about its category, however unanimous."""
    if not ranked:
        return False
    floor = nearest_similarity(version).get("p05")
    return floor is None or ranked[0][1] >= floor


def search_by_image(data: bytes, k: int = 8, filters: SimilarFilters | None = None, *,
                    with_category: bool = False) -> PhotoSearchResult:
    """The ``k`` products that look most like an uploaded photo.

    Raises:
        visrec.imaging.ImageRejected: the upload is not a usable image (reason inside).
        NotEmbedded: no embedder is served yet.
    """
    limits = PreprocessConfig(max_bytes=visrec_settings.MAX_UPLOAD_BYTES, max_pixels=visrec_settings.MAX_UPLOAD_PIXELS)
    image = decode_image(data, limits)  # refuse a bad upload before any model is loaded
    version = active_embedder_version()
    if version is None:
        raise NotEmbedded("no embedder is served yet; run visrec_index")
    embedder = load_embedder(version)
    array = preprocess_image(image, preprocess_config(embedder.backbone))
    vector = embedder.embed_served(array[None])[0]
    ranked = search_by_vector(vector, k, filters, version=version)  # the version that embedded the photo
    category, confidence, note = None, None, ""
    if with_category:
        neighbours = ranked if len(ranked) >= 10 else search_by_vector(vector, 10, SimilarFilters(in_stock=False),
                                                                       version=version)
        if looks_like_the_catalogue(neighbours, version):
            category, confidence = predict_category(neighbours)
        else:
            note = "the photo looks like nothing in the catalogue closely enough to name a category"
    return PhotoSearchResult(ranked, category, confidence, version.name, note)
