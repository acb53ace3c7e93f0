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
    "deployments",  # before environments: its POST .../{env}/deployments is not an action
    "environments",
    "metrics",
    "incidents",
    "integrations",
    "runners",
    "job_source",
    "worker_jobs",
)
