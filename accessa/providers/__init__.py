"""Clients of the third-party services the API and the stages share (LlamaParse, OpenAI)."""
