"""The Feast feature repository: definitions generated from ``shared.feature_definitions``."""
