"""The AI-specific verbs: model quality gates (and later the registry and the canary judge)."""
