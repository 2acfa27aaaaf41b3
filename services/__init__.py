"""leadwire's services: each a package run as ``python -m services.<name>``."""
