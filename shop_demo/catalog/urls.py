from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("", views.home, name="home"),
    path("c/<slug:slug>/", views.category_detail, name="category"),
    path("p/<slug:slug>/", views.product_detail, name="product"),
    path("search/photo/", views.photo_search, name="photo-search"),
    path("p/<slug:slug>/headless/", views.headless_product, name="headless-product"),
]
