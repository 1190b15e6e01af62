"""Routers: one per resource; `api_router` mounts the versioned ones under /api/v2."""

from fastapi import APIRouter

from producer_api.routes import documents, health, jobs, search, uploads, webhooks

api_router = APIRouter(prefix="/api/v2")
api_router.include_router(uploads.router)
api_router.include_router(documents.router)
api_router.include_router(jobs.router)
api_router.include_router(search.router)
api_router.include_router(webhooks.router)

__all__ = ["api_router", "health"]
