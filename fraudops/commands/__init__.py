"""Command-line commands of the shared package."""
