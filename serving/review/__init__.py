"""The reviewer page: data (files loaded once), ranking (the at-risk list), timeline, charts
(pure SVG functions), views (one customer's page content) and routes (the Starlette app)."""

from serving.review.routes import review_app

__all__ = ["review_app"]
