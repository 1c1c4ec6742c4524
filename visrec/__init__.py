"""visrec: visual product recommendations for Django shops."""

__version__ = "0.1.0"


def track(request, event_type: str, product=None, **kwargs) -> int:
    """Records a shopper event: ``visrec.track(request, "view", product)``.

    See :func:`visrec.services.privacy.tracking.track` (imported lazily so that importing
    ``visrec`` never needs the app registry).
    """
    from .services.privacy.tracking import track as _track

    return _track(request, event_type, product, **kwargs)
