"""Recipes: train image classifiers with WRS or weight decay (see the recipes issue)."""
