"""Dashboard widgets: one per module, each reusable by several screens."""
