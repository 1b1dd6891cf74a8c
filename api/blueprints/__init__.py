"""HTTP blueprints: one per resource, plus the generic one built for every entity."""
