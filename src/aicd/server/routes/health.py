"""GET /health: no authentication; 200 when the server and its database answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from aicd import __version__
from aicd.server.deps import get_state
from aicd.server.state import ServerState

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str
    sandbox: str = Field(
        description="how jobs run: 'on' (bubblewrap), 'off' (--unsafe-no-sandbox) or 'unavailable: <why>' "
        "(no job runs)"
    )


@router.get("/health", response_model=Health, summary="Liveness: the server and its database answer")
def health(state: Annotated[ServerState, Depends(get_state)]) -> Health:
    state.accounts.ping()
    return Health(status="ok", version=__version__, sandbox=state.dispatcher.sandbox_status)
