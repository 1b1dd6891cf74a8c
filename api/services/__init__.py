"""The service layer: every write and every list read goes through here, and none of it
knows HTTP (see the README's Layers section; `make lint` checks it)."""
