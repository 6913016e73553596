"""Module-level objects for the ``feast`` CLI, which discovers objects only at module level.

The yaml is generated elsewhere (``recsys features apply`` writes it under
``artifacts/features/feast_cli_<store>/``), so point the CLI at this folder for the definitions and at
that file for the configuration, from the repo root::

    feast -c zadanie2/feature_repo -f "$PWD/artifacts/features/feast_cli_sqlite/feature_store.yaml" plan

``recsys features apply`` does not import this file; it calls ``build_feature_objects`` with the
settings directly. Hence this is the one file with import-time work.
"""

from zadanie2.feature_repo.feature_views import build_feature_objects
from zadanie2.settings import load_settings

_objects = build_feature_objects(load_settings().paths()["offline"])

user = _objects.entities["user_id"]
product = _objects.entities["product_id"]
category = _objects.entities["category_id"]
user_stats_source = _objects.sources["user_stats"]
product_stats_source = _objects.sources["product_stats"]
category_stats_source = _objects.sources["category_stats"]
user_product_interactions_source = _objects.sources["user_product_interactions"]
user_stats_fv = _objects.feature_views["user_stats"]
product_stats_fv = _objects.feature_views["product_stats"]
category_stats_fv = _objects.feature_views["category_stats"]
user_product_interactions_fv = _objects.feature_views["user_product_interactions"]
ranker_v1 = _objects.feature_services["ranker_v1"]
