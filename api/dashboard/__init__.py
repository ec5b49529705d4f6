"""The operator's and marketer's dashboard at /dashboard: pages (api.dashboard.pages) and their JSON
(api.dashboard.data), included in the app as one router."""

from fastapi import APIRouter

from api.dashboard import data, pages

router = APIRouter()
router.include_router(pages.router)
router.include_router(data.router)
