from django.urls import include, path

urlpatterns = [path("api/visrec/", include("visrec.api.urls"))]
