"""Custom lint rules for the aikit code base (import-linter contract types used by ``make lint``)."""
