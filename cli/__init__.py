"""The ``leadwire`` admin command."""
