"""Dispatch logic: worker resolution, prompts, limits, forwarding, reply chunks. No broker here."""
