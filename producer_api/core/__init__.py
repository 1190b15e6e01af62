"""Cross-cutting pieces of the API: dependencies, security, errors, correlation ids."""
