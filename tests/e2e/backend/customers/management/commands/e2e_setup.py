"""Create the e2e tenants, their domains and an admin superuser in each.

public -> chalanpro.net, localhost
acme   -> acme.chalanpro.net
globex -> globex.chalanpro.net
"""
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django_tenants.utils import schema_context

from customers.models import Client, Domain

TENANTS = [
    ("public", "Public", ["chalanpro.net", "localhost"]),
    ("acme", "Acme Corp", ["acme.chalanpro.net"]),
    ("globex", "Globex Corp", ["globex.chalanpro.net"]),
]


class Command(BaseCommand):
    help = "Create e2e tenants, domains and superusers (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin-pass-123")

    def handle(self, *args, username, password, **options):
        User = get_user_model()
        for schema, name, domains in TENANTS:
            tenant = Client.objects.filter(schema_name=schema).first()
            if tenant is None:
                tenant = Client(schema_name=schema, name=name)
                tenant.save()  # creates + migrates the schema for non-public tenants
            for i, domain in enumerate(domains):
                Domain.objects.get_or_create(
                    domain=domain, defaults={"tenant": tenant, "is_primary": i == 0}
                )
            with schema_context(schema):
                user = User.objects.filter(username=username).first()
                if user is None:
                    User.objects.create_superuser(username, f"{username}@{domains[0]}", password)
                else:
                    user.set_password(password)
                    user.is_staff = user.is_superuser = True
                    user.save()
            self.stdout.write(f"tenant {schema}: domains={domains} superuser={username}")
