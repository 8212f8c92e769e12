"""The wearable-sensor source family: landing, raw, curated minutes, daily features."""
