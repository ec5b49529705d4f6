"""One APIRouter per audience: storefront, e-mail, marketing, live events, operations (included by create_app)."""
