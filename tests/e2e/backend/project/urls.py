from django.contrib import admin
from django.urls import path

from e2eapi import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/whoami/", views.whoami),
    path("api/upload/", views.upload),
    path("api/redirect/", views.redirect_to_whoami),
    path("api/slow/", views.slow),
]
