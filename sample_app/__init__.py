"""The sample application phaseshift scales: users and items, configured by its environment."""
