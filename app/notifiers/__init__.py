"""Chat channels. Each is one module implementing the `Notifier` Protocol of `base.py`; `build.py`
builds the configured ones and `channels.py` names them without loading their libraries."""
