"""The aicd server: FastAPI on uvicorn, REST API under /api/v1 (see create_app in app.py)."""
