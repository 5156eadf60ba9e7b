import json

from channels.generic.websocket import AsyncWebsocketConsumer


def _header(scope, name):
    for key, value in scope.get("headers", []):
        if key.decode("latin1").lower() == name:
            return value.decode("latin1")
    return None


class EchoConsumer(AsyncWebsocketConsumer):
    """Sends a hello naming the tenant, then echoes every message."""

    async def connect(self):
        tenant = self.scope.get("tenant_schema")
        if tenant is None:
            # Closing before accept makes Daphne answer the handshake with 403.
            await self.close()
            return
        await self.accept()
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "tenant": tenant,
                    "host": _header(self.scope, "host"),
                    "origin": _header(self.scope, "origin"),
                }
            )
        )

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=json.dumps({"type": "echo", "data": text_data}))
        elif bytes_data is not None:
            await self.send(bytes_data=bytes_data)
