"""Column names and vocabularies of the event log (REES46 e-commerce schema), defined once."""

from typing import Final

EVENT_TIME: Final = "event_time"
EVENT_TYPE: Final = "event_type"
PRODUCT_ID: Final = "product_id"
CATEGORY_ID: Final = "category_id"
CATEGORY_CODE: Final = "category_code"
BRAND: Final = "brand"
PRICE: Final = "price"
USER_ID: Final = "user_id"
USER_SESSION: Final = "user_session"

ALL_COLUMNS: Final = (
    EVENT_TIME,
    EVENT_TYPE,
    PRODUCT_ID,
    CATEGORY_ID,
    CATEGORY_CODE,
    BRAND,
    PRICE,
    USER_ID,
    USER_SESSION,
)
REQUIRED_COLUMNS: Final = (EVENT_TIME, EVENT_TYPE, PRODUCT_ID, USER_ID)
OPTIONAL_COLUMNS: Final = tuple(c for c in ALL_COLUMNS if c not in REQUIRED_COLUMNS)

VIEW: Final = "view"
CART: Final = "cart"
REMOVE_FROM_CART: Final = "remove_from_cart"
PURCHASE: Final = "purchase"
EVENT_TYPES: Final = (VIEW, CART, REMOVE_FROM_CART, PURCHASE)

# Feast / feature tables
EVENT_TIMESTAMP: Final = "event_timestamp"

# Text columns live in Arrow buffers: as Python str objects (pandas' default) they took ~85 % of a loaded
# log's memory (a 36-character session id costs ~85 bytes as an object, ~40 in Arrow).
TEXT_DTYPE = "string[pyarrow]"
