"""visrec for django-oscar shops: a settings preset, signal receivers and a template snippet.

In settings.py::

    from visrec.contrib.oscar import settings as visrec_oscar

    INSTALLED_APPS += ["rest_framework", "drf_spectacular", "visrec", "visrec.contrib.oscar"]
    VISREC_PRODUCT_MODEL = visrec_oscar.VISREC_PRODUCT_MODEL
    VISREC_IMAGE_MODEL = visrec_oscar.VISREC_IMAGE_MODEL
    VISREC = visrec_oscar.visrec_settings()

and in your ``oscar/catalogue/detail.html`` override::

    {% extends "oscar/catalogue/detail.html" %}
    {% block product_info %}{{ block.super }}{% include "visrec/oscar/product_widgets.html" %}{% endblock %}

Product views, basket additions and checkouts are then recorded from oscar's own signals
(:mod:`visrec.contrib.oscar.receivers`).
"""
