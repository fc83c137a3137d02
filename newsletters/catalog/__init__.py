"""The newsletters KL offers: the catalogue that subscriptions and editions refer to."""
