"""Data: batching (``DataLoader``); synthetic data, dataset readers and transforms join here."""

from .loader import DataLoader, default_collate
