"""The API's routers: each module exposes `router` (an APIRouter); app.py includes every one that exists."""

ROUTER_MODULES = (
    "health",
    "users",
    "audit",
    "projects",
    "variables",
    "webhooks",
    "pipelines",
    "jobs",
    "models",
    "model_access",
    "environments",
    "metrics",
    "incidents",
    "integrations",
    "runners",
    "job_source",
)
