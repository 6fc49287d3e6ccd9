"""Ground floor: the domain pieces every other part uses (features, model card, model store, settings)."""
