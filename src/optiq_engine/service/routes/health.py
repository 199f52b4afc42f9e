"""``GET /v1/health``: liveness."""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/health", tags=["system"])
def health() -> dict[str, str]:
    """Liveness (no key needed, no database access)."""
    return {"status": "ok"}
