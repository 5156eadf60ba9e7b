from django.apps import AppConfig


class E2eapiConfig(AppConfig):
    name = "e2eapi"
