"""Who may do what: connection and subscription tokens (JWT), channel namespaces from
configuration, and refusals logged without flooding. The core's `Access` (core/identity.py)
asks these, and the app's handlers, the same questions for every door."""
