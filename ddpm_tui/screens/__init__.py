"""Dashboard screens: one per module. Only ``runs`` is imported at start-up; the others are
imported when first opened, so the dashboard opens without loading plotext or numpy."""
